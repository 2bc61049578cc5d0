"""Find what is wrong with a dataset: likely label errors, off-topic pictures, duplicates.

Everything comes from the cached backbone embeddings probe mode uses (so after a probe run
it costs seconds, and never fine-tunes):

- **label errors**: out-of-fold class probabilities of a cross-validated logistic regression
  on the embeddings, ranked by cleanlab's confident learning (``find_label_issues``);
- **off-topic pictures**: the "unknown" score of unknown.py (the distance to the k-th nearest
  picture of the predicted class, plus the softmax term), each picture left out of the bank
  so that it cannot vouch for itself, against a threshold robust to the outliers it seeks;
- **duplicates**: the same content hash, or embeddings nearly the same (re-encoded, resized or
  slightly cropped copies); within a class, across classes (a conflict) or across splits
  (leakage);
- what reading the data found: unreadable files, placeholders, tiny pictures.

``find_issues(data)`` returns an ``Issues`` (data, like ``evaluate``); ``fixes.py`` applies
the decisions taken on them, moving files and never deleting one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf._files import atomic_open
from imgclf._html import escape, table
from imgclf._progress import progress
from imgclf.cleaning.fixes import COLUMNS, KINDS, Decision, read_table
from imgclf.collection.dedupe import perceptual_hash
from imgclf.config import CleanConfig, DataConfig, TrainConfig
from imgclf.data.decoding import load_image
from imgclf.data.labels import label_text
from imgclf.data.sources import SPLITS
from imgclf.errors import DataError, ImageError, ImgclfError
from imgclf.model import Classifier
from imgclf.training.embeddings import compute_embeddings, side_by_side
from imgclf.training.head_fit import standard_scale
from imgclf.training.plan import data_for
from imgclf.unknown import Detector

if TYPE_CHECKING:
    from imgclf.data.imagedata import ImageData

# What --auto does with each kind of issue sure enough (CleanConfig.auto_score and
# auto_label_score); suspicious pictures (drawings, tiny ones) are only listed.
AUTO_ACTIONS = {"label": "relabel", "off_topic": "remove", "duplicate": "remove",
                "conflict": "remove", "leakage": "remove", "unreadable": "remove"}


@dataclass(frozen=True)
class Issue:
    """One flagged picture.

    score: how sure the finding is, 0 to 1 (label: the out-of-fold probability of the
    suggested class; off_topic: how far above the threshold; duplicates: the similarity).
    other: the picture it duplicates (duplicate, conflict, leakage).
    """

    path: Path
    kind: str
    label: str | None
    split: str | None
    score: float
    suggested: str | None = None
    other: Path | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["path"] = str(self.path)
        values["other"] = str(self.other) if self.other else ""
        return values




@dataclass
class Issues:
    """Everything find_issues flagged, most certain first within each kind.

    Example:
        >>> issues = find_issues(ImageData.from_folder("cats"))
        >>> issues.summary()
        {'label': 12, 'off_topic': 4, 'duplicate': 3, ...}
        >>> issues.to_csv("cats/issues.csv")
    """

    rows: list[Issue]
    classes: list[str]
    pictures: int  # how many pictures were examined (0: not known, read from a CSV)
    threshold: float  # the off-topic outlier-score threshold
    seconds: float = 0.0

    def summary(self) -> dict[str, int]:
        return {kind: sum(issue.kind == kind for issue in self.rows) for kind in KINDS}

    def __repr__(self) -> str:
        counts = ", ".join(f"{kind}={count}" for kind, count in self.summary().items() if count)
        return f"Issues({len(self.rows)} of {self.pictures or '?'} pictures: {counts or 'none'})"

    def _repr_html_(self) -> str:
        """In a notebook: how many of each kind, then the surest issues first."""
        counts = ", ".join(f"{count} {kind.replace('_', '-')}"
                           for kind, count in self.summary().items() if count)
        rows = [(issue.kind, issue.path.name, issue.label or "", issue.suggested or "",
                 f"{issue.score:.2f}", issue.detail)
                for issue in sorted(self.rows, key=lambda issue: -issue.score)]
        return (f"<div><b>{len(self.rows)} issues</b>"
                + (f" among {self.pictures} pictures" if self.pictures else "")
                + (f": {escape(counts)}" if counts else "")
                + table(("kind", "picture", "label", "suggested", "score", "detail"), rows,
                        numbers=(4,)) + "</div>")

    def of_kind(self, kind: str) -> list[Issue]:
        return [issue for issue in self.rows if issue.kind == kind]

    def paths(self, kind: str | None = None) -> set[Path]:
        return {issue.path for issue in self.rows if kind is None or issue.kind == kind}

    def auto_decisions(self, config: CleanConfig = CleanConfig()) -> list[Decision]:
        """The fixes sure enough to make without a look: each label issue at least
        config.auto_label_score sure relabelled, each other issue at least config.auto_score
        sure moved out (see AUTO_ACTIONS); one decision per picture."""
        decisions: dict[Path, Decision] = {}
        for issue in self.rows:
            action = AUTO_ACTIONS.get(issue.kind)
            needed = config.auto_label_score if issue.kind == "label" else config.auto_score
            if action == "relabel" and not issue.suggested:  # multi-label: to no label
                continue  # is for a person to decide (the CSV cell emptied by hand)
            if action and issue.score >= needed and issue.path not in decisions:
                decisions[issue.path] = Decision(issue.path, action,
                                                 issue.suggested if action == "relabel" else None)
        return list(decisions.values())

    @classmethod
    def from_csv(cls, path: str | Path) -> Issues:
        """Issues read back from an issues.csv (the classes and threshold are not kept).

        Raises:
            DataError: no such file, or not an issues file.
        """
        rows = [Issue(Path(row["path"]), row["kind"], row.get("label") or None,
                      row.get("split") or None, float(row.get("score") or 0),
                      row.get("suggested") or None,
                      Path(row["other"]) if row.get("other") else None, row.get("detail", ""))
                for row in read_table(path, ("path", "kind"), "issues file")]
        return cls(rows, [], 0, float("nan"))

    def to_csv(self, path: str | Path) -> Path:
        """issues.csv: one row per issue (path, kind, given label, suggested label, score, ...)."""
        import csv

        with atomic_open(path, newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for issue in self.rows:
                row = issue.to_dict()
                row["score"] = f"{issue.score:.4f}"
                writer.writerow({key: "" if value is None else value
                                 for key, value in row.items()})
        return Path(path)


def find_issues(data: ImageData, *, config: CleanConfig = CleanConfig(),
                show_progress: bool = True) -> Issues:
    """Likely label errors, off-topic pictures, duplicates and unreadable files of a dataset.

    Every labelled picture of every split is examined; embeddings come from (and go to) the
    cache probe mode uses. With ``config.second_backbone``, the label and off-topic findings
    weigh that backbone's embeddings too (better evidence, at its embedding time).

    Example:
        >>> issues = find_issues(ImageData.from_folder("cats", valid_fraction=0.2, seed=42))
        >>> [(i.path.name, i.suggested) for i in issues.of_kind("label")][:2]
        [('lion_12.jpg', 'house_cat'), ('tabby_3.jpg', 'wild_cat')]
    """
    import time

    started = time.perf_counter()
    items, features, evidence, missing = _embeddings(data, show_progress,
                                                     config.second_backbone)
    targets = np.array([data.target(item) for item in items])
    if data.multi_label:
        targets = targets.astype(np.int64)  # (pictures, labels) 0/1
    elif len(set(targets.tolist())) < 2:
        raise DataError("Finding issues needs pictures of at least two classes.")
    screened = screen(evidence, targets, len(data.classes), config=config,
                      seed=data.config.seed)
    probabilities, outlier, threshold = (screened.probabilities, screened.outlier,
                                         screened.threshold)
    rows = _read_problems(data, missing)
    rows += [Issue(item.path, "off_topic", item.label, item.split,
                   # 1 at 1.5 robust deviations past the threshold
                   score=float(np.clip((outlier[i] - threshold) / (1.5 * screened.deviation),
                                       0, 1)),
                   detail=f"outlier score {outlier[i]:.3f} > {threshold:.3f}")
             for i, item in enumerate(items) if screened.off_topic[i]]
    if data.multi_label:
        rows += _label_sets(data, items, targets, probabilities, screened.mislabelled)
        # how much the out-of-fold probe believes a picture's labels: its least believed one
        believed = np.where(targets > 0, probabilities, 1 - probabilities).min(axis=1)
    else:
        rows += [Issue(items[i].path, "label", items[i].label, items[i].split,
                       score=float(probabilities[i].max()),
                       suggested=data.classes[int(probabilities[i].argmax())],
                       detail=f"p({data.classes[targets[i]]}) = "
                              f"{probabilities[i, targets[i]]:.2f}")
                 for i in np.flatnonzero(screened.mislabelled)]
        believed = probabilities[np.arange(len(targets)), targets]
    rows += _duplicates(data, items, features, believed, config, show_progress)
    if data.multi_label:  # sets of labels written as the CSV writes them
        delimiter = data.config.label_delim or " "
        rows = [dataclasses.replace(
            row, label=delimiter.join(row.label) if isinstance(row.label, tuple) else row.label,
            suggested=(delimiter.join(row.suggested) or None) if isinstance(row.suggested, tuple)
            else row.suggested) for row in rows]
    order = {kind: position for position, kind in enumerate(KINDS)}
    rows.sort(key=lambda issue: (order[issue.kind], -issue.score, str(issue.path)))
    return Issues(rows, list(data.classes), len(items), float(threshold),
                  time.perf_counter() - started)


def _label_sets(data: ImageData, items, targets: np.ndarray, probabilities: np.ndarray,
                mislabelled: np.ndarray) -> list[Issue]:
    """Multi-label data's label issues: the labels the out-of-fold probe gives (0.5 or
    more), written as the CSV writes them (label_delim), as the suggestion; the score is
    how sure it is of the least sure label it would change."""
    delimiter = data.config.label_delim or " "
    rows = []
    for i in np.flatnonzero(mislabelled):
        given = probabilities[i] >= 0.5
        changed = np.flatnonzero(given != (targets[i] > 0))
        sure = np.where(given, probabilities[i], 1 - probabilities[i])[changed]
        suggestion = [data.classes[j] for j in np.flatnonzero(given)]
        rows.append(Issue(
            items[i].path, "label", delimiter.join(items[i].label), items[i].split,
            score=float(sure.min()), suggested=delimiter.join(suggestion) or None,
            detail=", ".join(f"p({data.classes[j]}) = {probabilities[i, j]:.2f}"
                             for j in changed)
            + ("" if suggestion else "; it would give none of the labels")))
    return rows


def _embeddings(data: ImageData, show_progress: bool, second_backbone: str | None = None):
    """(labelled items every backbone could embed, their plain-view embeddings from the data's
    backbone, the same side by side with `second_backbone`'s (or the first again), the
    others)."""
    sources = [data]
    if second_backbone:
        if second_backbone == data.backbone:
            raise ImgclfError(f"The second backbone is the data's own ({second_backbone}): "
                              "name another (efficientnet_lite2, say), or leave it out.")
        sources.append(data.for_backbone(second_backbone))
    # every network first: a backbone whose weights are missing says so before minutes of
    # embedding with the other
    networks = [Classifier.create(source.backbone, len(data.classes), weights=source.weights)
                for source in sources]
    found = []  # each backbone's {split: Embeddings}, from the probe's own cache
    for source, network in zip(sources, networks):
        probe_data = data_for(TrainConfig(mode="probe"), source)
        found.append({split: compute_embeddings(
            network, probe_data, split, show_progress=show_progress,
            description=f"Embedding {split} pictures" + (
                f" ({source.backbone})" if len(sources) > 1 else ""))
            for split in SPLITS if data.labelled(split)})
    items, missing, parts = [], [], [[] for _ in sources]
    for split in found[0]:
        labelled = data.labelled(split)
        embedded = set.intersection(*(set(each[split].groups.tolist()) for each in found))
        items += [item for position, item in enumerate(labelled) if position in embedded]
        missing += [item for position, item in enumerate(labelled) if position not in embedded]
        for part, each in zip(parts, found):
            kept = np.isin(each[split].groups, list(embedded))
            order = np.argsort(each[split].groups[kept], kind="stable")
            part.append(each[split].features[kept][order])
    features = [np.concatenate(part) for part in parts]
    # each backbone scaled by its first split's mean length (the training pictures'), as
    # bench/trust.py --backbones measured it
    scales = [float(np.linalg.norm(part[0], axis=1).mean()) for part in parts]
    return items, features[0], side_by_side(features, scales), missing


def out_of_fold_probabilities(features: np.ndarray, targets: np.ndarray, num_classes: int, *,
                              folds: int = CleanConfig.folds,
                              regularisation: float = CleanConfig.regularisation,
                              seed: int = DataConfig.seed,
                              exclude: np.ndarray | None = None) -> np.ndarray:
    """Each picture's class probabilities from a logistic regression that never saw it.

    Each fold standardises the features on its training rows as the probe's head fit does
    (training.head_fit.standard_scale): on raw EfficientNet features L-BFGS crawls, and one
    pass over blood-cells' 2,400 pictures took minutes.

    exclude: pictures never trained on (each still gets its probabilities).
    targets: class indices, or (pictures, labels) 0/1 for multi-label data, whose
    probabilities are then each label's own (one logistic regression per label).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold

    if targets.ndim == 2:
        probabilities = np.zeros(targets.shape)
        splitter = KFold(n_splits=max(2, min(folds, len(targets))), shuffle=True,
                         random_state=seed)
        for train_rows, test_rows in splitter.split(features):
            if exclude is not None:
                train_rows = train_rows[~exclude[train_rows]]
            centre, spread = standard_scale(features[train_rows])
            scaled = (features[train_rows] - centre) / spread
            tested = (features[test_rows] - centre) / spread
            for label in range(targets.shape[1]):
                column = targets[train_rows, label]
                if column.min() == column.max():  # on all of them or on none
                    probabilities[test_rows, label] = np.clip(column.mean(), 0.01, 0.99)
                    continue
                model = LogisticRegression(C=regularisation, max_iter=2000)
                model.fit(scaled, column)
                probabilities[test_rows, label] = model.predict_proba(tested)[:, 1]
        return probabilities

    per_class = np.bincount(targets, minlength=num_classes)
    folds = int(max(2, min(folds, per_class[per_class > 0].min())))
    probabilities = np.zeros((len(targets), num_classes))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_rows, test_rows in splitter.split(features, targets):
        if exclude is not None:
            train_rows = train_rows[~exclude[train_rows]]
        centre, spread = standard_scale(features[train_rows])
        model = LogisticRegression(C=regularisation, max_iter=2000)
        model.fit((features[train_rows] - centre) / spread, targets[train_rows])
        probabilities[np.ix_(test_rows, model.classes_)] = model.predict_proba(
            (features[test_rows] - centre) / spread)
    return probabilities


def left_out_scores(features: np.ndarray, targets: np.ndarray, probabilities: np.ndarray
                    ) -> np.ndarray:
    """The unknown detector's outlier score of every picture, with itself left out of the
    bank (so it cannot vouch for itself) and its out-of-fold probabilities as class scores."""
    import torch

    bank = torch.from_numpy(features).float()
    by_class = targets.ndim == 1  # multi-label: the nearest pictures, whatever their labels
    labels = torch.from_numpy(targets if by_class else np.zeros(len(targets), np.int64))
    largest_k = max(1, int(torch.bincount(labels).clamp_min(1).min()) - 1)
    detector = Detector(bank, labels, torch.zeros(0), k=min(5, largest_k), by_class=by_class)
    logits = torch.from_numpy(np.log(np.clip(probabilities, 1e-9, 1))).float()
    scores = []
    with torch.no_grad():
        for start in range(0, len(bank), 512):
            rows = torch.arange(start, min(start + 512, len(bank)))
            scores.append(detector(logits[rows], bank[rows], exclude=rows))
    return torch.cat(scores).numpy()


def robust_spread(scores: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 x median absolute deviation): a centre and a standard deviation that
    the outliers being looked for barely move."""
    median = float(np.median(scores))
    return median, max(1.4826 * float(np.median(np.abs(scores - median))), 1e-6)


@dataclass(frozen=True)
class Screening:
    """What the embeddings alone say of each picture (find_issues' first two findings)."""

    probabilities: np.ndarray  # (pictures, classes): out-of-fold, off-topic ones left out
    outlier: np.ndarray  # (pictures,) left-out outlier scores
    threshold: float  # outlier scores above it are off-topic
    deviation: float  # the scores' robust standard deviation
    off_topic: np.ndarray  # (pictures,) bool
    mislabelled: np.ndarray  # (pictures,) bool: likely label errors (never off-topic ones)


def screen(features: np.ndarray, targets: np.ndarray, num_classes: int, *,
           config: CleanConfig = CleanConfig(), seed: int = DataConfig.seed) -> Screening:
    """Off-topic pictures and likely label errors from embeddings and given labels (class
    indices, or multi-label (pictures, labels) 0/1).

    Label errors are cleanlab's pick (confident learning, prune_by_noise_rate) plus every
    picture that the out-of-fold probe gives another class at least config.label_confidence:
    cleanlab's noise-rate estimate is diluted by clean splits (validation pictures are
    examined too) and so leaves out clear flips.
    """
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        raise ImgclfError("Finding label errors needs cleanlab: pip install 'imgclf[clean]'"
                          ) from None

    options = dict(folds=config.folds, regularisation=config.regularisation, seed=seed)
    probabilities = out_of_fold_probabilities(features, targets, num_classes, **options)
    outlier = left_out_scores(features, targets, probabilities)
    median, deviation = robust_spread(outlier)
    threshold = median + config.off_topic_spread * deviation
    off_topic = outlier > threshold
    if off_topic.any():  # off-topic pictures teach the folds nothing about the classes
        probabilities = out_of_fold_probabilities(features, targets, num_classes,
                                                  exclude=off_topic, **options)
    if targets.ndim == 2:  # multi-label: cleanlab's multi-label confident learning
        from cleanlab.multilabel_classification.filter import (
            find_label_issues as find_label_set_issues)

        # cleanlab needs each label both given and not given somewhere; a label on every
        # picture (or on none) has no error confident learning could find
        varied = np.flatnonzero((targets > 0).any(axis=0) & ~(targets > 0).all(axis=0))
        flagged = np.zeros(len(targets), dtype=bool)
        if len(varied):
            flagged = find_label_set_issues(
                [np.flatnonzero(row).tolist() for row in targets[:, varied]],
                probabilities[:, varied], filter_by="prune_by_noise_rate")
        # ... and every picture the probe is sure of a label it was not given, or sure
        # of the absence of one it was
        flagged |= (np.where(targets > 0, 1 - probabilities, probabilities)
                    >= config.label_confidence).any(axis=1)
        flagged &= ~off_topic & ((probabilities >= 0.5) != (targets > 0)).any(axis=1)
        return Screening(probabilities, outlier, float(threshold), deviation, off_topic,
                         flagged)
    flagged = find_label_issues(targets, probabilities, filter_by="prune_by_noise_rate")
    flagged |= probabilities.max(axis=1) >= config.label_confidence
    flagged &= ~off_topic & (probabilities.argmax(axis=1) != targets)
    return Screening(probabilities, outlier, float(threshold), deviation, off_topic, flagged)


def _duplicates(data: ImageData, items, features: np.ndarray, believed: np.ndarray,
                config: CleanConfig, show_progress: bool) -> list[Issue]:
    """Exact copies (content hash) and near copies (perceptual hash, or embeddings), each
    reported once: on the later picture (training pictures are kept over validation and
    test ones), but of two copies given different classes, on the one whose label the
    out-of-fold probe believes less (`believed`: its probability of the given label)."""
    rank = {"train": 0, "valid": 1, "test": 2, None: 3}
    order = sorted(range(len(items)), key=lambda i: (rank[items[i].split], str(items[i].path)))
    items, believed = [items[i] for i in order], believed[order]
    # square root, then centred: raw pooled features are all positive, and any two photos
    # of one domain look alike (cosine 0.8); so would a picture and its JPEG copy (0.9)
    rooted = np.sqrt(np.clip(features[order], 0, None))
    rooted -= rooted.mean(axis=0)
    normalised = rooted / np.maximum(np.linalg.norm(rooted, axis=1, keepdims=True), 1e-12)
    hashes = [data.hashes.get(item.path) for item in items]
    perceptual = _perceptual_hashes([item.path for item in items], show_progress)
    readable = perceptual.any(axis=1)  # a picture that could not be hashed has no bits set
    first_of_hash: dict[str, int] = {}
    rows, taken = [], set()
    def flag(i: int, j: int, score: float, how: str) -> None:
        conflict = items[i].label != items[j].label and items[i].split == items[j].split
        if conflict and believed[i] < believed[j]:
            i, j = j, i
        rows.append(_duplicate(items[i], items[j], score, how))
        taken.add(j)

    for j, item in enumerate(items):
        i = first_of_hash.setdefault(hashes[j], j) if hashes[j] else j
        if i != j:
            flag(i, j, 1.0, "the same file content")
    chunks = range(0, len(items), 256)
    nearest = np.concatenate([_nearest(normalised, start) for start in chunks])
    median, deviation = robust_spread(nearest) if len(nearest) else (1.0, 0.0)
    near_enough = max(config.near_duplicate, median + config.duplicate_spread * deviation)
    for start in chunks:
        stop = min(start + 256, len(items))
        similarity = normalised[start:stop] @ normalised.T
        bits = _BITS[perceptual[start:stop, None, :] ^ perceptual[None, :, :]].sum(axis=2)
        bits[~readable[start:stop]] = 64
        bits[:, ~readable] = 64
        alike = bits <= config.duplicate_distance
        # pictures alike bit for bit first: stronger evidence than embeddings
        score = np.where(alike, 2 - bits / 64, similarity)
        cropped = (bits <= config.crop_distance) & (similarity >= config.crop_similarity)
        near = alike | (similarity >= near_enough) | cropped
        for row, j in enumerate(range(start, stop)):
            earlier = [i for i in np.flatnonzero(near[row, :j]) if i not in taken]
            if j in taken or not earlier:
                continue
            i = max(earlier, key=lambda e: score[row, e])
            if alike[row, i]:
                found, how = 1 - bits[row, i] / 64, f"pictures {bits[row, i]} bits apart"
            elif similarity[row, i] >= near_enough:
                found, how = similarity[row, i], f"embeddings {similarity[row, i]:.3f} alike"
            else:  # both fairly close: a crop
                found, how = similarity[row, i], (f"pictures {bits[row, i]} bits apart and "
                                                  f"embeddings {similarity[row, i]:.3f} alike")
            flag(i, j, float(found), how)
    return rows


def _nearest(normalised: np.ndarray, start: int) -> np.ndarray:
    """Each picture's similarity to its nearest other picture, for rows start:start+256."""
    similarity = normalised[start:start + 256] @ normalised.T
    rows = np.arange(len(similarity))
    similarity[rows, rows + start] = -1.0
    return similarity.max(axis=1)


# set bits of every byte value: Hamming distances of packed hashes
_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)


def _perceptual_hashes(paths: list[Path], show_progress: bool) -> np.ndarray:
    """pHash of every picture as 8 bytes (zeros for one that cannot be read), decoded on
    threads."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def one(path: Path) -> np.ndarray:
        try:
            return np.packbits(perceptual_hash(load_image(path, max_side=256)).hash.ravel())
        except ImageError:
            return np.zeros(8, np.uint8)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        rows = list(progress(pool.map(one, paths), total=len(paths), enabled=show_progress,
                             description="Hashing pictures"))
    return np.stack(rows) if rows else np.zeros((0, 8), np.uint8)


def _duplicate(kept, copy, score: float, how: str) -> Issue:
    kind = ("leakage" if kept.split != copy.split else
            "conflict" if kept.label != copy.label else "duplicate")
    return Issue(copy.path, kind, copy.label, copy.split, score=score, other=kept.path,
                 suggested=kept.label if kind == "conflict" else None,
                 detail=f"{how} as {kept.path.name} ({label_text(kept.label)}, {kept.split})")


def _read_problems(data: ImageData, missing) -> list[Issue]:
    report, split_of = data.report, data.report.skipped_split
    rows = [Issue(Path(path), "unreadable", Path(path).parent.name, split_of.get(path), 1.0,
                  detail=reason) for path, reason in report.skipped]
    rows += [Issue(item.path, "unreadable", item.label, item.split, 1.0,
                   detail="could not be embedded") for item in missing]
    labels = {item.path: item for split in data.items.values() for item in split}
    rows += [Issue(Path(path), "suspicious", getattr(labels.get(path), "label", None),
                   getattr(labels.get(path), "split", None), 0.5, detail=reason)
             for path, reason in report.suspicious]
    return rows
