"""The tutorial notebooks in docs/tutorials, run top to bottom by a real Jupyter kernel on
the shared photos: no cell fails, the figures are there, and a picture of none of the
classes comes back unknown."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO, SHARED, shared_dataset

pytestmark = pytest.mark.integration
TUTORIALS = REPO / "docs" / "tutorials"


def run_notebook(name: str, folder, monkeypatch, shared=SHARED.parent):
    """Execute a copy of the notebook in `folder` (its working folder), the shared photos
    in `shared`; the run notebook."""
    nbformat = pytest.importorskip("nbformat", reason="needs the test extra (nbclient)")
    nbclient = pytest.importorskip("nbclient", reason="needs the test extra (nbclient)")
    pytest.importorskip("ipykernel", reason="needs the test extra (ipykernel)")
    notebook = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    monkeypatch.setenv("IMGCLF_SHARED", str(shared))  # the kernel's environment
    client.execute()
    return notebook


def outputs(cell, kind: str) -> list:
    return [output["data"][kind] for output in cell.get("outputs", [])
            if kind in output.get("data", {})]


def text(cell) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", [])) + "".join(
        outputs(cell, "text/plain"))


def cell_with(notebook, source: str):
    found = [cell for cell in notebook.cells
             if cell.cell_type == "code" and source in cell.source]
    assert len(found) == 1, f"no single cell runs {source!r}"
    return found[0]


@pytest.mark.parametrize("name", ["cats", "breeds"])
def test_the_tutorials_are_kept_without_outputs(name):
    notebook = json.loads((TUTORIALS / f"{name}.ipynb").read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_the_cats_tutorial_runs_in_a_kernel(tmp_path, monkeypatch):
    shared_dataset("hymenoptera")
    shared_dataset("imagenet-sample-100")
    notebook = run_notebook("cats", tmp_path, monkeypatch)
    assert "using" in text(cell_with(notebook, "imgclf.collect(\"data/cats\""))  # offline
    assert "<table>" in "".join(outputs(cell_with(notebook, "data = ImageData"), "text/html"))
    for figure in ("data.show_batch", "plot_confusion_matrix", "plot_top_losses",
                   "model.explain(photo)", "model.explain(stranger)"):
        assert outputs(cell_with(notebook, figure), "image/png"), figure
    assert "Evaluation on the valid split" in "".join(
        outputs(cell_with(notebook, "evaluation = model.evaluate()"), "text/html"))
    assert "issues</b>" in "".join(outputs(cell_with(notebook, "find_issues(data)"),
                                           "text/html"))
    stranger = text(cell_with(notebook, "model.predict(stranger)"))
    assert "label='unknown'" in stranger and "unknown=True" in stranger
    assert "unknown=False" in text(cell_with(notebook, "model.predict(photo)"))
    assert (tmp_path / "cats.imgclf").is_file()
    assert "127.0.0.1" in text(cell_with(notebook, "page.launch"))
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


def sample_of(dataset, target, per_folder: int):
    """A copy of a shared data set with the first `per_folder` pictures of each class folder
    of each split: the same kinds and layout, a fraction of the pictures to embed."""
    for kind in sorted(p for p in dataset.glob("*/*") if p.is_dir()):
        copy = target / kind.relative_to(dataset)
        copy.mkdir(parents=True)
        for picture in sorted(kind.iterdir())[:per_folder]:
            shutil.copyfile(picture, copy / picture.name)


def test_the_many_classes_tutorial_runs_in_a_kernel(tmp_path, monkeypatch):
    # 40 pictures of each of the 8 kinds (320 of 2,400): every cell runs as on the whole set,
    # in 72 s instead of 168 s
    shared = tmp_path / "shared"
    sample_of(shared_dataset("blood-cells"), shared / "datasets" / "blood-cells", 20)
    work = tmp_path / "work"
    work.mkdir()
    notebook = run_notebook("breeds", work, monkeypatch, shared)
    assert "blood-cells" in text(cell_with(notebook, "folder = shared"))
    for figure in ("show_batch", "plot_per_class", "plot_confusion_matrix(max_classes=6)",
                   "model.explain(photo)"):
        assert outputs(cell_with(notebook, figure), "image/png"), figure
    per_class = "".join(outputs(cell_with(notebook, "pd.DataFrame"), "text/html"))
    assert per_class.count("<tr") >= 9  # a header and the 8 kinds of cell
    assert "8 classes" in "".join(outputs(cell_with(notebook, "data = ImageData"), "text/html"))
    assert "5 pictures: 5 predicted" in "".join(
        outputs(cell_with(notebook, "predict_batch"), "text/html"))
    assert (work / "many.imgclf").is_file()
