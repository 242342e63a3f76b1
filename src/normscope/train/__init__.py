"""Training with tracking: GD / SGD with weight decay, and a Tracker for any loop."""

from normscope.train.hook import run_training
from normscope.train.loop import TrainResult, learning_rate, train
from normscope.train.options import OPTIMIZERS, SCHEDULES, check_options
from normscope.train.tracker import Record, Tracker

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Record",
    "Tracker",
    "TrainResult",
    "check_options",
    "learning_rate",
    "run_training",
    "train",
]
