"""Real architectures, built from small configs (no download), with data they take.

Each entry returns ``(model, data, subject options)`` for a Subject: Hugging Face GPT-2
(causal LM: token labels, some ``-100``) and BERT (sequence classification), PyTorch's
``nn.TransformerEncoder``, normscope's ResNet with ``BatchNorm2d``, and a model that
returns a dict.
"""

from __future__ import annotations

import torch
from torch import nn

from normscope import nets


def _ids(n: int, t: int, vocab: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(seed))


def gpt2(dtype: torch.dtype = torch.float32, n: int = 4, t: int = 6, seed: int = 0):
    """GPT-2 (pre-LN, tied embeddings); labels are the next tokens, the last one -100."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=24,
        n_positions=16,
        n_embd=12,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).to(dtype)
    ids = _ids(n, t + 1, config.vocab_size, seed)
    labels = ids[:, 1:].clone()  # a causal LM's shift is the caller's
    labels[:, -1] = -100
    inputs = {"input_ids": ids[:, :-1], "attention_mask": torch.ones(n, t, dtype=torch.long)}
    return model, (inputs, labels), {}


def bert(dtype: torch.dtype = torch.float32, n: int = 6, t: int = 5, seed: int = 0):
    """BERT for sequence classification (post-LN), three classes; padded attention mask."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=20,
        hidden_size=12,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).to(dtype)
    mask = torch.ones(n, t, dtype=torch.long)
    mask[0, -2:] = 0
    inputs = {"input_ids": _ids(n, t, config.vocab_size, seed), "attention_mask": mask}
    labels = torch.arange(n) % 3
    return model, (inputs, labels), {}


class EncoderClassifier(nn.Module):
    """``nn.TransformerEncoder`` over (n, T, d) features, mean-pooled, then a linear head."""

    def __init__(self, d: int = 8, classes: int = 3) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


def encoder(dtype: torch.dtype = torch.float32, n: int = 6, seed: int = 0):
    torch.manual_seed(seed)
    model = EncoderClassifier().to(dtype)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 8, generator=gen).to(dtype)
    return model, (x, torch.arange(n) % 3), {}


def resnet(dtype: torch.dtype = torch.float32, n: int = 6, seed: int = 0):
    """normscope's ResNet (BasicBlocks, BatchNorm2d, projection shortcuts) on 3x6x6 images."""
    model = nets.resnet(
        input_shape=(3, 6, 6), output_dim=3, width=2, depth=1, norm="batch", seed=seed
    ).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 6, 6, generator=gen).to(dtype)
    return model, (x, torch.arange(n) % 3), {}


class DictModel(nn.Module):
    """An MLP with layer norm that returns ``{"logits": ..., "hidden": ...}``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8), nn.Tanh())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.body(x)
        return {"logits": self.head(hidden), "hidden": hidden}


def dict_model(dtype: torch.dtype = torch.float32, n: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=gen).to(dtype)
    return DictModel().to(dtype), (x, torch.arange(n) % 3), {}


ZOO = {
    "gpt2": gpt2,
    "bert": bert,
    "transformer_encoder": encoder,
    "resnet_bn": resnet,
    "dict_output": dict_model,
}
