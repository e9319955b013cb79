"""`ragline ingest`'s progress bar: pages and chunks per second on a terminal, nothing but the result
table when the output is piped; and the ingest progress hook it is drawn from."""

import io
import re

from ragline.cli import IngestProgress, main
from tests.support import make_pdf

PAGES = [
    f"Page {n}.\n" + "\n".join(f"Line {i} of page {n} about espresso descaling." for i in range(40)) for n in range(6)
]


def test_ingest_tells_its_progress_hook_pages_and_chunks(tmp_path):
    from ragline.config import Settings
    from ragline.container import build_container

    container = build_container(Settings(data_dir=tmp_path / "data"), snapshot_interval_seconds=0)
    calls = []
    try:
        container.ingest.progress = lambda doc, pages, total, chunks: calls.append((doc.id, pages, total, chunks))
        accepted = container.ingest.accept("cafe", make_pdf(PAGES), filename="guide.pdf", source="cli")
        doc = container.ingest.process(container.store.claim(accepted.job_id))
    finally:
        container.close()
    assert calls and {c[0] for c in calls} == {doc.id}
    assert [c[1] for c in calls] == sorted(c[1] for c in calls) and calls[-1][1:] == (6, 6, doc.chunk_count)
    assert [c[3] for c in calls] == sorted(c[3] for c in calls)


def test_the_bar_shows_pages_and_chunks_per_second_on_a_terminal():
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    with IngestProgress(console, 1) as progress:
        progress.start_file("guide.pdf")
        progress(None, 3, 6, 12)
        progress.progress.refresh()
        progress.file_done()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "pages/s" in text and "chunks/s" in text and "3/6" in text


def test_piped_output_has_no_progress_drawing(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.pdf").write_bytes(make_pdf(PAGES))
    (docs / "notes.md").write_text("# Notes\nThe grinder needs cleaning weekly.")
    code = main(["ingest", str(docs), "--tenant", "cafe", "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 0
    assert "indexed 2, failed 0" in err
    assert "\r" not in err and "\x1b[" not in err  # no redraws, no cursor movement, no colour
    assert "ingesting" not in err  # no bar: only the table and the summary lines
    assert err.count("pages/s") == 1 and "chunks/s" in err.splitlines()[-1]
