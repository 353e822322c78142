"""The judge's workspace access: reads stay inside, symlinks out are refused, limits and file types hold."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from agents.judge.retrieval import CodeIndex, Trajectory, locate, named_paths, quoted_terms
from agents.judge.workspace import AccessRefused, Workspace
from hilnas.errors import UserError


def _minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` (written by hand: no PDF writer is a dependency)."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "results").mkdir()
    (root / "src" / "model.py").write_text(
        "import torch\nfrom torchvision.models import resnet18\n\n\nclass Net(torch.nn.Module):\n"
        "    def forward(self, x):\n        return x\n\n\ndef build():\n    return resnet18()\n"
    )
    (root / "src" / "broken.py").write_text("def oops(:\n")
    (root / "results" / "metrics.csv").write_text("epoch,accuracy\n" + "".join(f"{i},0.{i}\n" for i in range(50)))
    (root / "results" / "summary.json").write_text(json.dumps({"accuracy": 0.91, "epochs": 3}))
    (root / "results" / "report.pdf").write_bytes(_minimal_pdf("Accuracy 0.91 on the test set"))
    Image.new("RGB", (32, 16), "red").save(root / "results" / "curve.png")
    (root / "results" / "weights.bin").write_bytes(bytes(range(256)) * 10)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not read me")
    os.symlink(outside / "secret.txt", root / "src" / "link_out.txt")
    os.symlink(outside, root / "linked_dir")
    os.symlink(root / "src" / "model.py", root / "model_alias.py")  # a link that stays inside is fine
    return Workspace(root)


def test_symlinks_and_dotdot_out_of_the_workspace_are_refused(workspace: Workspace) -> None:
    with pytest.raises(AccessRefused):
        workspace.read_bytes("src/link_out.txt")
    with pytest.raises(AccessRefused):
        workspace.read_bytes("linked_dir/secret.txt")
    with pytest.raises(AccessRefused):
        workspace.read_bytes("../outside/secret.txt")
    assert workspace.view("src/link_out.txt").kind == "refused"
    files = set(workspace.graph())
    assert "src/link_out.txt" not in files and not any(f.startswith("linked_dir") for f in files)
    assert "model_alias.py" in files
    assert "do not read me" not in workspace.tree()


def test_reads_are_capped_and_binaries_are_described_not_dumped(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "big.txt").write_text("x" * 10_000)
    (root / "blob.dat").write_bytes(b"\0\1\2" * 100)
    ws = Workspace(root, max_file_bytes=1000)
    assert len(ws.read_bytes("big.txt")) == 1000
    assert ws.view("big.txt").truncated
    view = ws.view("blob.dat")
    assert view.kind == "binary" and "300 bytes" in view.text


def test_graph_holds_python_symbols_and_imports(workspace: Workspace) -> None:
    node = workspace.graph()["src/model.py"]
    names = {(s.name, s.kind) for s in node.symbols}
    assert {("Net", "class"), ("Net.forward", "function"), ("build", "function")} <= names
    assert "torchvision.models.resnet18" in node.imports
    net = next(s for s in node.symbols if s.name == "Net")
    assert (net.start_line, net.end_line) == (5, 7)
    assert workspace.graph()["src/broken.py"].parse_error.startswith("SyntaxError")


def test_views_by_file_type(workspace: Workspace) -> None:
    csv_view = workspace.view("results/metrics.csv")
    assert csv_view.kind == "csv" and "['epoch', 'accuracy']" in csv_view.text and csv_view.truncated
    json_view = workspace.view("results/summary.json")
    assert json_view.kind == "json" and '"accuracy": 0.91' in json_view.text
    pdf_view = workspace.view("results/report.pdf")
    assert pdf_view.kind == "pdf" and "Accuracy 0.91" in pdf_view.text
    image_view = workspace.view("results/curve.png")
    assert image_view.kind == "image" and "32x16" in image_view.text
    assert workspace.view("results/weights.bin").kind == "binary"
    span = workspace.view("src/model.py", around=(5, 7))
    assert (span.start_line, span.end_line) == (5, 7) and span.text.startswith("class Net")


def test_a_missing_workspace_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a directory"):
        Workspace(tmp_path / "nope")


def test_named_paths_and_terms_follow_devai_wording() -> None:
    criteria = (
        'The "ResNet-18" model is imported from "PyTorch" in `src/model.py`; metrics go to results/metrics.csv '
        "and figures to `results/figures/`, see https://example.org/a/b.png, with start/end positions and "
        "`torchvision.transforms`."
    )
    assert named_paths(criteria) == ["src/model.py", "results/figures/", "results/metrics.csv"]
    assert quoted_terms(criteria) == ["ResNet-18", "PyTorch", "torchvision.transforms"]


def test_code_search_and_locate_find_the_relevant_file(workspace: Workspace) -> None:
    index = CodeIndex(workspace)
    assert index.search("resnet18 build")[0].path in ("src/model.py", "model_alias.py")
    located = locate(workspace, "The model is defined in `src/model.py`.", index)
    assert located[0] == "src/model.py"


def test_trajectory_retrieval_and_schema_validation(tmp_path: Path, shared_dir: Path) -> None:
    schema = shared_dir / "devai" / "trajectory-schema.json"
    usage = {
        "input_tokens": 1,
        "output_tokens": 1,
        "model": "m",
        "cost": 0.0,
        "llm_inference_time": 0.1,
        "step_execution_time": 0.2,
    }
    steps = [
        {
            "step": i,
            "user_message": None,
            "agent": {"thought": thought, "action": action},
            "environment": env,
            "step_usage": usage,
            "accumulated_usage": {"accumulated_cost": 0.0, "accumulated_time": 0.2 * i},
        }
        for i, (thought, action, env) in enumerate(
            [
                ("Plan the data loading", "write src/data_loader.py", None),
                ("Train with tqdm progress bar", "python src/train.py", "100%|#####| 10/10 epochs"),
                ("Save the model", "torch.save(model, 'models/saved_models/fashionnet.pt')", "saved"),
            ]
        )
    ]
    path = tmp_path / "trajectory.json"
    path.write_text(json.dumps(steps))
    trajectory = Trajectory.load(path, schema)
    assert trajectory.retrieve("training progress tqdm")[0].start_line == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"step": 0}]))
    with pytest.raises(UserError, match="DevAI schema"):
        Trajectory.load(bad, schema)


def test_evidence_names_missing_files_and_stays_within_its_budget(workspace: Workspace) -> None:
    from agents.judge.evidence import EvidenceCollector

    big = workspace.root / "src" / "big.py"
    big.write_text("".join(f"def resnet_helper_{i}():\n    return {i}\n" for i in range(2000)))
    fresh = Workspace(workspace.root)
    collector = EvidenceCollector(fresh, max_chars=3000)
    evidence = collector.collect("The resnet helper is in `src/big.py` and results go to `results/absent.txt`.")
    assert evidence[0].path == "results/absent.txt" and "absent from the workspace" in evidence[0].note
    assert any(e.path == "src/big.py" for e in evidence)
    assert sum(len(e.excerpt) for e in evidence) <= 3000
    for e in evidence:
        if e.path == "src/big.py":  # every quoted span is exactly the file's lines it claims
            lines = big.read_text().splitlines()[e.start_line - 1 : e.end_line]
            assert e.excerpt == "\n".join(lines)
