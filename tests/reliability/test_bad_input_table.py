"""The table of bad inputs in docs/reliability.md counts cases that the tests really try."""

from __future__ import annotations

import re
from pathlib import Path

from normscope import measures
from normscope.errors import DataError
from normscope.testing import invalid_options

from tests import test_cli_usage
from tests.reliability import test_bad_inputs as bad

PAGE = Path(__file__).parents[2] / "docs" / "reliability.md"
DATA_CALLS = {
    "non_finite_data_scale",
    "unknown_data_option",
    "unknown_loss",
    "cross_entropy_on_regression",
    "batch_size_too_large",
}
MODEL_CALLS = {"input_shape_mismatch", "output_shape_mismatch"}


def documented() -> dict[str, int]:
    section = PAGE.read_text().split("## Bad inputs tried", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([a-zA-Z ]+) \| .*? \| (\d+) \| .*\|$", section, flags=re.M)
    return {kind: int(count) for kind, count in rows}


def tried() -> dict[str, int]:
    names = measures.names()
    options = sum(len(invalid_options(n)) for n in names)
    options += len(names)  # an unknown option each
    options += sum(any(len(o) > 3 for o in measures.info(n).options) for n in names)  # misspelt
    calls = [c[0] for c in bad.BAD_MEASURES]
    api_data = sum(issubclass(c[2], DataError) for c in bad.API_CASES)
    return {
        "CLI usage": len(test_cli_usage.CASES) + len(bad.PROCESS_CASES),
        "option values": options,
        "spec": len(bad.BAD_SPECS),
        "data": api_data + sum(c in DATA_CALLS for c in calls),
        "model": len(bad.API_CASES) - api_data + sum(c in MODEL_CALLS for c in calls),
        "store": 4 * len(bad.STORES) + 3,  # 4 commands each; run and 2 output folders
    }


def test_every_kind_of_bad_input_is_in_the_table_with_a_count_the_tests_reach():
    table, counts = documented(), tried()
    assert set(table) == set(counts)
    for kind, count in table.items():
        assert counts[kind] >= count, (kind, counts[kind], count)


def test_at_least_100_invalid_option_values_are_tried():
    assert sum(len(invalid_options(n)) for n in measures.names()) >= 100
