"""Label errors and off-topic pictures over many seeded damages of hymenoptera, in seconds.

bench/clean.py damages a copy of the folder and runs the whole `imgclf clean` once per seed:
one flipped label more or less moves its recall by 4 points, so two seeds say little. Here
the pictures are embedded once (through the cache probe mode and `imgclf clean` use), then
each seed damages the labels in memory as bench/clean.py does on disk (10% of the training
labels flipped, never those of the 10 pictures it copies; 10 ImageNet photos of neither ants
nor bees given random classes; validation pictures untouched) and runs `cleaning.screen`,
the code `find_issues` runs, with each setting compared.

Prints one JSON line: per setting, mean and lowest precision and recall of the flipped labels,
the off-topic recall, how many seeds meet the issue's target (label recall >= 0.9 at
precision >= 0.8), and the validation accuracy of a probe (the probe phase's own head fit,
one view) trained on the damaged pictures, and on them after --auto's fixes (sure labels
relabelled, sure off-topic pictures removed), against the undamaged pictures'.

Run: python bench/clean_labels.py [--seeds 20]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
HYMENOPTERA = SHARED / "hymenoptera"
IMAGENET = SHARED / "imagenet-sample-100"
ANT_OR_BEE = ("n02219486", "n02206856")  # ImageNet's ant and bee classes


def embed() -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """(features of train then valid pictures, their labels, how many are training ones,
    features of the strangers), at the size and through the cache `imgclf clean` uses."""
    from imgclf import ImageData
    from imgclf.config import TrainConfig
    from imgclf.model import Classifier
    from imgclf.training.embeddings import compute_embeddings, picture_embeddings
    from imgclf.training.plan import data_for

    data = data_for(TrainConfig(mode="probe"), ImageData.from_folder(HYMENOPTERA, verbose=False))
    network = Classifier.create(data.backbone, len(data.classes))
    parts = [compute_embeddings(network, data, split, show_progress=False)
             for split in ("train", "valid")]
    strangers = sorted(p for p in IMAGENET.glob("*.JPEG") if not p.name.startswith(ANT_OR_BEE))
    others = picture_embeddings(network, data, strangers, show_progress=False)[0]
    return (np.concatenate([part.features for part in parts]),
            np.concatenate([part.targets for part in parts]), len(parts[0].targets), others)


def probe_accuracy(features, targets, valid_features, valid_targets) -> float:
    from imgclf.training.embeddings import Embeddings
    from imgclf.training.head_fit import fit_linear_head

    fit = fit_linear_head(Embeddings(features, targets, np.arange(len(targets)), 0), 2, seed=42)
    predicted = (valid_features @ fit.weight.T + fit.bias).argmax(axis=1)
    return float((predicted == valid_targets).mean())


def one_seed(features, targets, train, strangers, seed: int, config) -> dict:
    from imgclf.cleaning.finding import screen

    rng = np.random.default_rng(seed)
    order = rng.permutation(train)
    flips = order[10:10 + round(0.1 * train)]  # bench/clean.py copies 10, never flips them
    given = targets.copy()
    given[flips] = 1 - given[flips]
    chosen = rng.choice(len(strangers), 10, replace=False)
    features = np.concatenate([features, strangers[chosen]])
    given = np.concatenate([given, rng.integers(0, 2, 10)])
    planted_off = set(range(len(targets), len(given)))
    found = screen(features, given, 2, config=config, seed=42)
    flagged = set(np.flatnonzero(found.mislabelled).tolist())
    hits = len(flagged & set(flips.tolist()))
    off = set(np.flatnonzero(found.off_topic).tolist())
    # --auto, as Issues.auto_decisions does it: sure labels relabelled, sure off-topic removed
    sure_off = found.off_topic & ((found.outlier - found.threshold)
                                  >= config.auto_score * 1.5 * found.deviation)
    sure_label = found.mislabelled & (found.probabilities.max(axis=1) >= config.auto_label_score)
    fixed = np.where(sure_label, found.probabilities.argmax(axis=1), given)
    training = np.r_[np.arange(train), np.arange(len(targets), len(given))]  # not validation
    kept = training[~sure_off[training]]
    valid = (features[train:len(targets)], targets[train:])
    return {"accuracy_damaged": probe_accuracy(features[training], given[training], *valid),
            "accuracy_after_auto": probe_accuracy(features[kept], fixed[kept], *valid),
            "precision": hits / len(flagged) if flagged else 1.0, "recall": hits / len(flips),
            "off_topic_recall": len(off & planted_off) / len(planted_off),
            "off_topic_precision": len(off & planted_off) / len(off) if off else 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    if not HYMENOPTERA.is_dir() or not IMAGENET.is_dir():
        sys.exit(f"needs {HYMENOPTERA} and {IMAGENET}")
    import warnings

    from imgclf.config import CleanConfig

    warnings.filterwarnings("ignore")  # cleanlab's and scikit-learn's chatter
    features, targets, train, strangers = embed()
    settings = {"default": CleanConfig(),
                "cleanlab_alone": replace(CleanConfig(), label_confidence=1.01),
                "auto_label_score_0.9": replace(CleanConfig(), auto_label_score=0.9),
                "C 0.1, cleanlab alone, auto 0.9": replace(
                    CleanConfig(), regularisation=0.1, label_confidence=1.01,
                    auto_label_score=0.9)}
    result = {"benchmark": "clean_labels", "seeds": args.seeds, "pictures": len(targets) + 10,
              "flipped": round(0.1 * train),
              "accuracy_undamaged": round(probe_accuracy(features[:train], targets[:train],
                                                         features[train:], targets[train:]), 4)}
    for name, config in settings.items():
        rows = [one_seed(features, targets, train, strangers, seed, config)
                for seed in range(args.seeds)]
        table = {key: np.array([row[key] for row in rows]) for key in rows[0]}
        result[name] = {
            **{f"{key}_mean": round(float(values.mean()), 4) for key, values in table.items()},
            "precision_lowest": round(float(table["precision"].min()), 3),
            "recall_lowest": round(float(table["recall"].min()), 3),
            "seeds_on_target": int(((table["recall"] >= 0.9)
                                    & (table["precision"] >= 0.8)).sum()),
            "accuracy_after_auto_lowest": round(float(table["accuracy_after_auto"].min()), 4),
            "seeds_after_auto_within_1_point": int(
                (table["accuracy_after_auto"] >= result["accuracy_undamaged"] - 0.01).sum()),
            "settings": {"regularisation": config.regularisation,
                         "label_confidence": config.label_confidence,
                         "auto_label_score": config.auto_label_score}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
