"""The quality bench's baselines, fitted with scikit-learn on the bench's split in the bench's own run:

  class prior     the training set's class frequencies for every test image
  pixels LR       multinomial logistic regression on the standardised 28x28 pixels
  linear probe    the same on a pretrained backbone's frozen, average-pooled features of the very PNGs the
                  pipeline reads (one per configured backbone with pretrained weights), preprocessed as the
                  pipeline's evaluation does (its weights' mean/std, its image size)

Each regression's strength C is chosen by 5-fold cross-validated LogLoss on the training images only, so a
baseline is as good as it honestly can be without the test labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from finegrain.config import BackboneSpec, HeadConfig

C_GRID = np.logspace(-4, 1, 6)


def prior_probs(train_y: np.ndarray, n_test: int, n_classes: int) -> np.ndarray:
    """Every test row gets the training class frequencies."""
    freq = np.bincount(train_y, minlength=n_classes) / len(train_y)
    return np.tile(freq, (n_test, 1))


def logistic_probs(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int) -> np.ndarray:
    """Standardise, then multinomial logistic regression with C picked by 5-fold CV LogLoss; test probabilities."""
    model = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=C_GRID,
            l1_ratios=(0.0,),
            cv=5,
            scoring="neg_log_loss",
            max_iter=3000,
            random_state=seed,
            use_legacy_attributes=False,
        ),
    )
    model.fit(train_x.reshape(len(train_x), -1).astype(np.float64), train_y)
    return model.predict_proba(test_x.reshape(len(test_x), -1).astype(np.float64))


@torch.no_grad()
def frozen_features(
    spec: BackboneSpec, paths: list[Path], image_size: int, batch_size: int = 64
) -> np.ndarray:
    """Average-pooled features of `spec`'s pretrained backbone (eval mode, no fine-tuning) for each image."""
    from finegrain.data.transforms import EvalPreset
    from finegrain.models import build_model

    model = build_model(spec, HeadConfig(name="linear", pooling="avg"), num_classes=2).eval()
    cfg = model.data_config
    preset = EvalPreset(image_size, cfg["mean"], cfg["std"], normalize=True)
    out = []
    for start in range(0, len(paths), batch_size):
        batch = [preset(np.asarray(Image.open(p).convert("RGB"))) for p in paths[start : start + batch_size]]
        out.append(model.pool(model.features(torch.stack(batch))).float().numpy())
    return np.concatenate(out)
