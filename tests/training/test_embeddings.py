"""Probe mode: cached embeddings, the logistic-regression head, and auto mode's choice."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf import ImageData, Learner, load, train
from imgclf.cli import main
from imgclf.model import Classifier
from imgclf.training.embeddings import Embeddings, compute_embeddings, side_by_side
from imgclf.training.head_fit import fit_linear_head

FAST = dict(image_size=64, batch_size=8, num_workers=0, verbose=False)


def test_embeddings_are_cached_and_a_new_class_costs_only_its_pictures(colours, make_photo):
    data = ImageData.from_folder(colours, **FAST)
    network = Learner.create(data, verbose=False).network
    first = compute_embeddings(network, data, "train", views=2, show_progress=False)
    assert first.computed == 2 * len(data.train) and first.features.shape == (40, 1280)
    again = compute_embeddings(network, data, "train", views=2, show_progress=False)
    assert again.computed == 0 and np.array_equal(first.features, again.features)
    assert sorted(np.unique(first.groups, return_counts=True)[1]) == [2] * 20
    for index in range(12):
        make_photo(f"colours/green/{index}.jpg", size=(72, 72), tint=(20, 180, 20), noise=70)
    more = ImageData.from_folder(colours, **FAST)
    grown = compute_embeddings(network, more, "train", views=2, show_progress=False)
    assert grown.computed == 2 * sum(1 for item in more.train if item.label == "green")


def test_augmented_views_differ_from_the_plain_view(colours):
    data = ImageData.from_folder(colours, **FAST)
    network = Learner.create(data, verbose=False).network
    rows = compute_embeddings(network, data, "train", views=2, show_progress=False)
    plain, augmented = rows.features[0], rows.features[1]
    assert rows.groups[0] == rows.groups[1] and not np.allclose(plain, augmented)


def test_linear_head_matches_logistic_regression_probabilities():
    generator = np.random.default_rng(0)
    features = np.vstack([generator.normal(-1, 1, (30, 5)), generator.normal(1, 1, (30, 5))])
    targets = np.repeat([0, 1], 30)
    embeddings = Embeddings(features, targets, np.arange(60), computed=60)
    fit = fit_linear_head(embeddings, 2)
    logits = features @ fit.weight.T + fit.bias
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    from sklearn.linear_model import LogisticRegression

    # fitted on standardised features, its scaling folded back into the weight and bias
    spread = np.maximum(features.std(axis=0), np.median(features.std(axis=0)))
    standard = (features - features.mean(axis=0)) / spread
    reference = LogisticRegression(C=fit.regularisation, max_iter=2000).fit(standard, targets)
    assert np.allclose(probabilities, reference.predict_proba(standard), atol=1e-4)
    assert fit.regularisation in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    assert fit.cv_accuracy is not None and fit.cv_accuracy > 0.8


def test_a_feature_that_hardly_varies_gets_no_outsized_weight():
    generator = np.random.default_rng(0)
    targets = np.repeat([0, 1], 40)
    features = generator.normal(0, 1, (80, 6)) + targets[:, None] * 0.8
    features[:, 0] = 1e-4 * (targets + generator.normal(0, 0.3, 80))  # nearly constant
    fit = fit_linear_head(Embeddings(features, targets, np.arange(80), computed=80), 2)
    # scaled up to the typical feature's spread, it would get a weight near 10,000
    assert np.abs(fit.weight).max() < 50
    logits = features @ fit.weight.T + fit.bias
    assert (logits.argmax(axis=1) == targets).mean() > 0.8


def test_side_by_side_gives_each_backbone_the_same_weight():
    # one backbone's features may be far longer than another's: each is divided by its
    # mean length, so that neither decides a distance alone
    generator = np.random.default_rng(0)
    short, long = generator.normal(0, 1, (20, 8)), generator.normal(5, 30, (20, 16))
    assert side_by_side([short]) is short
    joined = side_by_side([short, long])
    assert joined.shape == (20, 24)
    for part in (joined[:, :8], joined[:, 8:]):
        assert np.linalg.norm(part, axis=1).mean() == pytest.approx(1, rel=1e-5)
    np.testing.assert_allclose(joined[:, 8:] * np.linalg.norm(long, axis=1).mean(), long,
                               rtol=1e-4)
    given = side_by_side([short, long], scales=[2.0, 4.0])  # scales measured elsewhere
    np.testing.assert_allclose(given[:, :8], short / 2, rtol=1e-6)


def test_probe_gives_the_same_kind_of_model_file(colours, tmp_path):
    data = ImageData.from_folder(colours, **FAST)
    learner = train(data, mode="probe", output=tmp_path / "probe", verbose=False)
    assert [row["phase"] for row in learner.history] == ["probe"]
    assert learner.history[0]["accuracy"] == 1.0
    model = load(tmp_path / "probe" / "model.imgclf")
    assert model.predict(colours / "red" / "3.jpg").label == "red"
    # the head's probabilities agree with the network run end to end
    assert learner.evaluate().accuracy == 1.0


def test_auto_mode_probes_alone_on_tiny_data(colours):
    data = ImageData.from_folder(colours, **FAST)
    learner = train(data, mode="auto", verbose=False)
    assert [row["phase"] for row in learner.history] == ["probe"]


def test_auto_mode_fine_tunes_from_the_probe_on_larger_data(colours, monkeypatch):
    monkeypatch.setattr("imgclf.training.plan.AUTO_PROBE_BELOW", 5)
    data = ImageData.from_folder(colours, **FAST)
    learner = train(data, mode="auto", epochs=1, verbose=False,
                    patience=0)  # the probe is right on every colour, which would end it
    assert [row["phase"] for row in learner.history] == ["probe", "all 1"]
    assert learner.config.restore_best


def test_cli_probe_mode(colours, tmp_path):
    assert main(["train", str(colours), "--image-size", "64", "--mode", "probe",
                 "--out", str(tmp_path / "run")]) == 0
    assert load(tmp_path / "run" / "model.imgclf").info.history[0]["phase"] == "probe"


def test_many_rows_choose_the_regularisation_on_a_share_of_every_class(monkeypatch):
    from imgclf.training import head_fit

    rng = np.random.default_rng(0)
    classes, pictures, views = 10, 20, 2
    centres = rng.normal(size=(classes, 16)) * 3
    targets = np.repeat(np.arange(classes), pictures * views)
    groups = np.repeat(np.arange(classes * pictures), views)
    features = (centres[targets] + rng.normal(size=(len(targets), 16))).astype(np.float32)
    rows = Embeddings(features, targets, groups, computed=0)

    share = head_fit._search_rows(rows, 60, seed=0)
    assert 40 <= len(share) <= 80
    chosen = np.unique(groups[share])
    assert set(np.unique(targets[share])) == set(range(classes))  # every class takes part
    assert len(share) == views * len(chosen)  # whole pictures: every view of each

    seen = []
    from sklearn.linear_model import LogisticRegression

    original = LogisticRegression.fit

    def counting(self, x, y, *args, **kwargs):
        seen.append(len(x))
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", counting)
    monkeypatch.setattr(head_fit, "SEARCH_ROWS", 60)
    fit = fit_linear_head(rows, classes, seed=0)
    assert max(seen[:-1]) < 60 and seen[-1] == len(features)  # search on a share; final on all
    assert len(seen) == 7 * 3 + 1  # 3 folds past SEARCH_ROWS
    accuracy = ((features @ fit.weight.T + fit.bias).argmax(axis=1) == targets).mean()
    assert accuracy > 0.95


def _count_decodes(monkeypatch) -> "collections.Counter[str]":
    """Count every full decode Pillow makes, by the decoded file's content hash (verification
    decodes bytes, the loaders decode files: both are counted)."""
    import collections
    import hashlib
    import io

    from PIL import ImageFile

    decodes: collections.Counter[str] = collections.Counter()
    original = ImageFile.ImageFile.load

    def load(self):
        if getattr(self, "tile", None):  # pixels still to decode
            source = self.fp
            if isinstance(source, io.BytesIO):
                content = source.getvalue()
            else:
                with open(source.name, "rb") as handle:
                    content = handle.read()
            decodes[hashlib.sha256(content).hexdigest()] += 1
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return decodes


@pytest.mark.parametrize("image_size", [64, None], ids=["size given", "default size"])
def test_a_run_decodes_each_original_picture_once(colours, tmp_path, monkeypatch, image_size):
    # train in probe mode (with augmented views: 10 training pictures a class), then evaluate
    # the model file on the same data: verification's decode is the only one of each photo;
    # the probe's augmented views decode each training copy once. Without image_size the
    # probe tests at probe_image_size (patched smaller here): verification's views must be
    # of that size. Every reader in this process, so that each decode is counted.
    import hashlib

    from imgclf import evaluate

    monkeypatch.setattr("imgclf.inference.loop.inference_workers", lambda: 0)
    monkeypatch.setattr("imgclf.config.PROBE_SIZE_FACTOR", 96 / 224)
    decodes = _count_decodes(monkeypatch)
    options = {**FAST, "image_size": image_size}
    data = ImageData.from_folder(colours, **options)
    trained = train(data, mode="probe", output=tmp_path / "model", verbose=False)
    model = load(tmp_path / "model" / "model.imgclf")
    assert model.input.image_size == (image_size or 96)
    result = evaluate(model, data, show_progress=False)
    originals = {data.hashes[item.path] for split in ("train", "valid")
                 for item in data.items[split]}
    assert len(originals) == 24 and result.summary()["accuracy"] == 1.0
    assert {digest: decodes[digest] for digest in originals} == dict.fromkeys(originals, 1)
    copy_digests = {hashlib.sha256(path.read_bytes()).hexdigest()
                    for path in data.copies.values()}
    assert len(copy_digests) == 20 and all(decodes[digest] == 1 for digest in copy_digests)
    assert set(decodes) <= originals | copy_digests
    assert trained.history[-1]["accuracy"] == result.summary()["accuracy"]


@pytest.mark.parametrize("resize", ["crop", "squish", "pad"])
def test_a_stored_view_gives_the_tensor_the_original_gives(colours, make_photo, resize):
    import numpy as np
    from PIL import Image

    from imgclf.data.transforms import eval_transform

    # large enough to be decoded at reduced scale (1/4), and upright by its EXIF tag: the view
    # verification stores is the picture every later reader decodes
    tall = make_photo("colours/red/tall.jpg", size=(300, 450), tint=(180, 20, 20), noise=70)
    with Image.open(tall) as picture:  # stored sideways, upright by its EXIF tag
        exif = picture.getexif()
        exif[0x0112] = 6
        picture.transpose(Image.Transpose.ROTATE_90).save(tall, exif=exif, quality=90)
    data = ImageData.from_folder(colours, **FAST, resize=resize, valid_fraction=0.5)
    items = data.valid + data.train
    pictures = data.plain(items)
    expected = [eval_transform(data.input).read(item.path) for item in items]
    stored = pictures.views.paths
    assert all(path.exists() for path in stored)  # left by verification
    assert all(np.array_equal(pictures[i][0], expected[i]) for i in range(len(expected)))
    # the view is what is read: a black one gives a black picture's tensor
    np.save(stored[0], np.zeros((64, 64, 3), np.uint8))
    black = eval_transform(data.input)(Image.new("RGB", (64, 64)))
    assert np.array_equal(pictures[0][0], black)
    stored[0].write_bytes(b"not a view")  # damaged, and removed: decoded and stored again
    stored[1].unlink()
    assert (np.array_equal(pictures[0][0], expected[0])
            and np.array_equal(pictures[1][0], expected[1]))
    assert stored[1].exists() and np.array_equal(pictures[0][0], expected[0])


# --- embeddings that vanish or rot in the cache (#27, item 7) -------------------------------

def test_embeddings_deleted_while_a_run_computes_them_are_still_used(colours, monkeypatch):
    """`imgclf cache --clear` in another shell while a probe embeds: every picture keeps its
    row (they used to be dropped without a word, and the model scored 1.0 on what was left)."""
    from imgclf.training import embeddings

    data = ImageData.from_folder(colours, image_size=64, num_workers=0, verbose=False)
    network = Classifier.create(data.backbone, len(data.classes)).eval()

    def saved_then_cleared(path, values):
        pass  # as if each file were deleted right after it was written

    monkeypatch.setattr(embeddings, "save_array", saved_then_cleared)
    found = embeddings.compute_embeddings(network, data, "train", show_progress=False)
    assert len(found.targets) == len(data.train) and found.computed == len(data.train)


def test_a_damaged_cached_embedding_is_computed_again(colours):
    from imgclf.training.embeddings import compute_embeddings, embedding_folder

    data = ImageData.from_folder(colours, image_size=64, num_workers=0, verbose=False)
    network = Classifier.create(data.backbone, len(data.classes)).eval()
    first = compute_embeddings(network, data, "train", show_progress=False)
    files = sorted(embedding_folder(data).rglob("*.npy"))
    files[0].write_bytes(files[0].read_bytes()[:40])  # cut short
    np.save(files[1], np.full(7, np.nan, np.float32))  # the wrong size, not numbers
    again = compute_embeddings(network, data, "train", show_progress=False)
    assert again.computed == 2
    assert np.allclose(np.sort(again.features, axis=0), np.sort(first.features, axis=0),
                       atol=1e-5)
