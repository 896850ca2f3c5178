"""Writes optax_clr/_data/digits.npz, the embedded default dataset.

The source is scikit-learn's copy of the UCI "Optical Recognition of
Handwritten Digits" test set (optdigits; E. Alpaydin and C. Kaynak, 1998),
distributed with scikit-learn under the BSD-3-Clause licence: 1797 8x8 images
whose pixels count the "on" pixels of a 4x4 block of the original 32x32
bitmap, so they are integers 0..16.

The file holds ``x`` uint8 [1797, 8, 8] (values 0..16, not rescaled) and
``y`` uint8 [1797] (0..9); ``optax_clr.data.load_digits`` divides ``x`` by 16.
scikit-learn is needed only to run this script, not at runtime.

Usage: python tools/make_digits_npz.py [OUTPUT]
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

DEFAULT_OUTPUT = (pathlib.Path(__file__).resolve().parent.parent
                  / "optax_clr" / "_data" / "digits.npz")


def main(argv: list[str]) -> None:
  from sklearn.datasets import load_digits  # only needed here

  output = pathlib.Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
  digits = load_digits()
  images = np.asarray(digits.images)
  labels = np.asarray(digits.target)
  # The cast to uint8 must be lossless: the pixels are counts 0..16.
  if not (np.array_equal(images, np.round(images))
          and images.min() >= 0 and images.max() <= 16):
    raise SystemExit("sklearn digits images are not integers in [0, 16]")
  if images.shape != (1797, 8, 8) or labels.shape != (1797,):
    raise SystemExit(f"unexpected shapes {images.shape}, {labels.shape}")
  output.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(output, x=images.astype(np.uint8),
                      y=labels.astype(np.uint8))
  print(f"wrote {output} ({output.stat().st_size} bytes)")


if __name__ == "__main__":
  main(sys.argv)
