"""The page at GET / in headless Chromium, against a real `ragline serve` on 127.0.0.1.

The server answers with Claude configured against a local fake of the Messages API that writes one
word every STREAM_INTERVAL seconds: an answer that arrives over more than a second, so the test can
see it grow on the page before the stream's `done`. Nothing the page loads may come from elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from ragline_emulator.anthropic_server import FakeAnthropic
from tests.support import Server, make_encrypted_pdf, make_pdf, ragline, wait_for_status

pytestmark = pytest.mark.timeout(240)

STREAM_INTERVAL = 0.08  # seconds between two words of the fake model's answer
QUESTION = "How many days do I have to return an item?"
ANSWER = "Customers may return items within 30 days of delivery for a full refund [1]. Keep the receipt."
HANDBOOK = make_pdf(
    [
        "Refund policy\nCustomers may return items within 30 days of delivery for a full refund.",
        "Shipping\nOrders ship within 2 business days. Express shipping costs 15 euros.",
    ],
    title="Store handbook",
)
NOTES = b"Warehouse notes. The loading dock closes at six in the evening; late trucks wait until morning."
TRAVEL = "Travel policy. Train tickets are reimbursed in second class. Hotels up to 120 euros a night."
BADGES = b"Security badges. Employee badges open door 4 of the north building from 7 in the morning."
PHONE = {"width": 390, "height": 844}


@dataclass
class Ragline:
    url: str
    key: str
    api: httpx.Client


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        server.script(answer=ANSWER, delta_interval=STREAM_INTERVAL)
        yield server


@pytest.fixture(scope="module")
def served(fake: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ragline]:
    """`ragline serve` with one key, and a travel policy already indexed in the default knowledge base."""
    data_dir = tmp_path_factory.mktemp("web-page")
    key = ragline("keys", "create", "--tenant", "web", "--data-dir", str(data_dir)).strip()
    env = {
        "ANTHROPIC_API_KEY": fake.api_key,
        "ANTHROPIC_BASE_URL": fake.url,
        "RAGLINE_ANSWER_CACHE_ENABLED": "false",  # every question streams from the (slow) model
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    server = Server(data_dir, env=env).start()
    with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60, trust_env=False) as api:
        accepted = api.post("/v1/kb/documents", json={"title": "Travel policy", "text": TRAVEL})
        assert accepted.status_code == 202, accepted.text
        assert wait_for_status(api, accepted.json()["data"]["document_id"])["status"] == "indexed"
        yield Ragline(server.url, key, api)
    server.stop()


def connect(page, served: Ragline) -> None:
    page.goto(served.url + "/")
    page.get_by_label("API key", exact=True).fill(served.key)
    page.get_by_label("API key", exact=True).press("Enter")
    page.locator("#workspace").wait_for(state="visible")


def watch_answer(page) -> None:
    """Records the answer's length and the stream's state at every change of the answer on the page."""
    page.evaluate(
        """() => {
        window.answerSeen = [];
        const answer = document.querySelector('#answer');
        const text = document.querySelector('#answer-text');
        new MutationObserver(() => window.answerSeen.push(
            {at: performance.now(), length: text.textContent.length, state: answer.dataset.state}
        )).observe(text, {childList: true, subtree: true, characterData: true});
    }"""
    )


def assert_streamed(page) -> None:
    """The answer grew in several steps, over most of the time the model took, before the stream was done."""
    seen = page.evaluate("window.answerSeen")
    growing = [s for s in seen if s["state"] == "streaming" and s["length"] > 0]
    lengths = sorted({s["length"] for s in growing})
    assert len(lengths) >= 5, f"the answer did not grow word by word: {seen}"
    assert lengths[0] < len(ANSWER) / 2, f"the answer's first words came with most of it: {seen}"
    words = len(ANSWER.split())
    took = (growing[-1]["at"] - growing[0]["at"]) / 1000
    assert took >= STREAM_INTERVAL * (words - 1) * 0.5, f"the words arrived all at once ({took:.2f} s)"


def no_horizontal_overflow(page) -> list[str]:
    """The elements that stick out past the viewport's right edge (none on a page that fits)."""
    return page.evaluate(
        """() => {
        const width = document.documentElement.clientWidth;
        const out = [];
        if (document.documentElement.scrollWidth > width) out.push(`page is ${document.documentElement.scrollWidth}px wide`);
        for (const el of document.querySelectorAll('body *')) {
            const box = el.getBoundingClientRect();
            if (box.width && box.right > width + 1 && !el.closest('.visually-hidden')) {
                out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} right=${Math.round(box.right)}`);
            }
        }
        return out;
    }"""
    )


def test_upload_search_stream_cite_and_rate(offline, served: Ragline, fake: FakeAnthropic, screenshot) -> None:
    browser = offline(viewport={"width": 1280, "height": 900})
    page = browser.context.new_page()
    connect(page, served)

    # A knowledge base of its own: uploads, search and chat below are scoped to it.
    page.locator("summary", has_text="New knowledge base").click()
    page.get_by_label("Name of the new knowledge base", exact=True).fill("Handbooks")
    page.get_by_label("Name of the new knowledge base", exact=True).press("Enter")
    page.wait_for_function("() => document.querySelector('#kb-select').selectedOptions[0]?.text === 'Handbooks'")

    page.locator("#file-input").set_input_files(
        [
            {"name": "handbook.pdf", "mimeType": "application/pdf", "buffer": HANDBOOK},
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": NOTES},
            {"name": "locked.pdf", "mimeType": "application/pdf", "buffer": make_encrypted_pdf("secret")},
            {"name": "program.exe", "mimeType": "application/octet-stream", "buffer": b"MZ\x90\x00"},
        ]
    )
    # Each file has its own progress; the refused one keeps the server's reason.
    refused = page.locator(".upload.failed")
    refused.wait_for()
    assert "Unsupported file type (415)" in refused.inner_text()
    assert "cannot ingest .exe files" in refused.inner_text()
    documents = page.locator("#document-list")
    handbook = documents.locator("li.doc[data-status=indexed]", has_text="handbook.pdf")
    handbook.wait_for(timeout=90_000)
    documents.locator("li.doc[data-status=indexed]", has_text="notes.txt").wait_for(timeout=90_000)
    locked = documents.locator("li.doc[data-status=failed]", has_text="locked.pdf")
    locked.wait_for(timeout=90_000)
    assert "encrypted PDF" in locked.inner_text()
    assert "2 pages" in handbook.inner_text()
    assert "Travel policy" not in documents.inner_text()  # it is in the default knowledge base
    screenshot(page, "desktop-1-documents")

    # Keyword search, then the same words filtered to the other document: nothing.
    page.get_by_label("Search query", exact=True).fill("express shipping")
    page.get_by_label("Mode", exact=True).select_option("keyword")
    page.get_by_label("Search query", exact=True).press("Enter")
    first = page.locator("#search-results li.result").first
    first.wait_for()
    assert "Store handbook (handbook.pdf)" in first.inner_text()
    assert "page 2" in first.inner_text() and "15 euros" in first.inner_text()
    assert "(keyword," in page.locator("#search-summary").inner_text()
    notes_id = documents.locator("li.doc", has_text="notes.txt").get_attribute("data-document-id")
    page.get_by_label("Filters (JSON)", exact=True).fill(f'{{"document_id": "{notes_id}"}}')
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_function("() => document.querySelector('#search-summary').textContent.startsWith('0 of 0')")
    page.get_by_label("Filters (JSON)", exact=True).fill("{not json")
    page.get_by_role("button", name="Search", exact=True).click()
    assert "must be a JSON object" in page.locator("#search-error").inner_text()
    page.get_by_label("Filters (JSON)", exact=True).fill("")
    page.get_by_label("Search query", exact=True).press("Enter")
    first.wait_for()
    screenshot(page, "desktop-2-search")

    # The streamed answer: seen growing word by word, then done.
    watch_answer(page)
    page.get_by_label("Question", exact=True).fill(QUESTION)
    page.get_by_label("Question", exact=True).press("Enter")
    page.wait_for_function("() => document.querySelector('#answer').dataset.state === 'streaming'")
    screenshot(page, "desktop-3-streaming")
    page.wait_for_function("() => document.querySelector('#answer').dataset.state === 'done'", timeout=30_000)
    assert_streamed(page)
    assert page.locator("#answer-text").inner_text().strip() == ANSWER
    assert fake.last.body["stream"] is True and QUESTION in fake.last.user_text

    # [1] opens the passage it cites, with its document and page.
    page.locator("#answer-text button.cite", has_text="[1]").click()
    source = page.locator("#source")
    source.wait_for()
    assert source.locator("h3").inner_text() == "[1] Store handbook (handbook.pdf)"
    assert source.locator("#source-meta").inner_text().startswith("Page 1")
    assert "return items within 30 days of delivery" in source.locator("blockquote").inner_text()
    screenshot(page, "desktop-4-citation")

    # Rated in the history; the rating is the server's.
    asked = page.locator("#history-list li.history-item", has_text=QUESTION).first
    asked.wait_for()
    asked.get_by_role("button", name="Rate 4 of 5").click()
    asked.get_by_text("Rated 4/5").wait_for()
    query_id = asked.get_attribute("data-query-id")
    assert served.api.get(f"/v1/queries/{query_id}").json()["rating"] == 4
    assert page.locator("#answer-rating .rating").get_attribute("data-rating") == "4"  # same answer, same stars
    screenshot(page, "desktop-5-history")

    # The failed document deleted (after the confirmation).
    page.once("dialog", lambda dialog: dialog.accept())
    locked_id = documents.locator("li.doc", has_text="locked.pdf").get_attribute("data-document-id")
    page.get_by_role("button", name="Delete locked.pdf").click()
    documents.locator("li.doc", has_text="locked.pdf").wait_for(state="detached", timeout=30_000)
    assert served.api.get(f"/v1/kb/documents/{locked_id}").status_code == 404

    # Back to the default knowledge base: its own documents only.
    page.get_by_label("Knowledge base", exact=True).select_option("default")
    documents.locator("li.doc", has_text="Travel policy").wait_for()
    assert "handbook.pdf" not in documents.inner_text()

    assert browser.blocked == [], "the page tried to reach another host"
    assert browser.page_errors == []


def test_phone_width_fits_without_horizontal_scrolling(offline, served: Ragline, screenshot) -> None:
    browser = offline(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = browser.context.new_page()
    page.goto(served.url + "/")
    assert no_horizontal_overflow(page) == []
    screenshot(page, "phone-1-connect")
    connect(page, served)
    page.locator("#document-list li.doc", has_text="Travel policy").wait_for()
    page.get_by_label("Search query", exact=True).fill("hotel reimbursement per night")
    page.get_by_label("Search query", exact=True).press("Enter")
    page.locator("#search-results li.result").first.wait_for()
    page.get_by_label("Question", exact=True).fill("How many euros a night for hotels?")
    page.get_by_label("Question", exact=True).press("Enter")
    page.wait_for_function("() => document.querySelector('#answer').dataset.state === 'done'", timeout=30_000)
    page.locator("#answer-text button.cite").first.click()
    page.locator("#source").wait_for()
    assert no_horizontal_overflow(page) == []
    screenshot(page, "phone-2-workspace")
    assert browser.blocked == []
    assert browser.page_errors == []


def tab_to(page, selector: str, *, limit: int = 80) -> None:
    """Presses Tab until the focused element matches ``selector``: it is reachable from the keyboard."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"{limit} Tabs never reached {selector}")


def focus_is_visible(page) -> bool:
    return page.evaluate("getComputedStyle(document.activeElement).outlineStyle !== 'none'")


def test_the_main_flow_with_the_keyboard_only(offline, served: Ragline, screenshot) -> None:
    browser = offline(viewport={"width": 1280, "height": 900})
    page = browser.context.new_page()
    # A listener from the start: Playwright intercepts file choosers once the page has one, and the
    # interception, switched on by expect_file_chooser() alone, could lag behind the key press.
    page.on("filechooser", lambda chooser: None)
    page.goto(served.url + "/")
    # The key field has the focus from the start.
    page.keyboard.type(served.key)
    page.keyboard.press("Enter")
    page.locator("#workspace").wait_for(state="visible")

    # The file input is hidden behind its "Choose files" label but takes the focus, visibly.
    tab_to(page, "#file-input")
    assert page.evaluate("getComputedStyle(document.querySelector('label[for=file-input]')).outlineStyle") != "none", (
        "the focused file input shows no focus on its label"
    )
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files([{"name": "keyboard.txt", "mimeType": "text/plain", "buffer": BADGES}])
    page.locator("#document-list li.doc[data-status=indexed]", has_text="keyboard.txt").wait_for(timeout=90_000)

    tab_to(page, "#search-query")
    page.keyboard.type("employee badges door")
    page.keyboard.press("Enter")
    page.locator("#search-results li.result", has_text="keyboard.txt").first.wait_for()

    tab_to(page, "#ask-query")
    page.keyboard.type("Which door do employee badges open?")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#answer').dataset.state === 'done'", timeout=30_000)

    tab_to(page, "#answer-text button.cite")
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "source", "the opened passage takes the focus"
    tab_to(page, "#source-close")
    page.keyboard.press("Enter")
    assert page.locator("#source").is_hidden()
    assert page.evaluate("document.activeElement.matches('#answer-text button.cite')"), "focus returns to [n]"

    # The history is reloaded once the answer is done: wait for that, or the reload can replace the
    # focused star between the Tab and the Space (seen on a loaded machine).
    page.locator("#history-list li.history-item", has_text="Which door do employee badges open?").first.wait_for()
    page.wait_for_function("() => document.querySelector('#history-list').getAttribute('aria-busy') === 'false'")
    tab_to(page, "#history-list li.history-item button[aria-label='Rate 5 of 5']")
    assert focus_is_visible(page)
    page.keyboard.press("Space")
    page.locator("#history-list li.history-item").first.get_by_text("Rated 5/5").wait_for()
    screenshot(page, "keyboard-1-rated", full_page=False)

    # Forgetting the key brings back the key field.
    tab_to(page, "#forget-key")
    page.keyboard.press("Enter")
    page.locator("#connect").wait_for(state="visible")
    assert page.evaluate("localStorage.getItem('ragline.apiKey')") is None
    assert browser.blocked == []
    assert browser.page_errors == []


def test_a_refused_key_is_explained(offline, served: Ragline) -> None:
    browser = offline(viewport={"width": 1280, "height": 900})
    page = browser.context.new_page()
    page.goto(served.url + "/")
    page.get_by_label("API key", exact=True).fill("rl_not-a-real-key")
    page.get_by_label("API key", exact=True).press("Enter")
    error = page.locator("#key-error")
    error.wait_for()
    refused = httpx.get(f"{served.url}/v1/knowledge-bases", headers={"x-api-key": "rl_not-a-real-key"}).json()
    assert error.inner_text() == f"{refused['error']} (401): {refused['message']}"  # the server's own words
    assert page.locator("#workspace").is_hidden()
    assert page.evaluate("localStorage.getItem('ragline.apiKey')") is None


def test_stop_ends_the_answer_and_the_model_stream(offline, served: Ragline, fake: FakeAnthropic) -> None:
    browser = offline(viewport={"width": 1280, "height": 900})
    page = browser.context.new_page()
    connect(page, served)
    page.get_by_label("Question", exact=True).fill("Which class are train tickets reimbursed in?")
    page.get_by_label("Question", exact=True).press("Enter")
    page.wait_for_function("() => document.querySelector('#answer').dataset.state === 'streaming'")
    page.get_by_role("button", name="Stop", exact=True).click()
    page.wait_for_function("() => document.querySelector('#answer').dataset.state === 'stopped'")
    shown = page.locator("#answer-text").inner_text()
    assert 0 < len(shown) < len(ANSWER)
    assert page.locator("#ask-stop").is_hidden() and page.locator("#ask-submit").is_enabled()
    # The browser hung up, so Ragline closed its request to the model before the answer's end.
    stream = fake.streams[-1]
    page.wait_for_timeout(2000)  # the last word would have come by now
    assert not stream.finished and stream.client_closed_at is not None
    assert page.locator("#answer-text").inner_text() == shown
    assert browser.page_errors == []


def test_dropped_files_upload_with_their_progress(offline, served: Ragline) -> None:
    """A file dropped on the zone, sent over a throttled connection: its progress is seen rising."""
    browser = offline(viewport={"width": 1280, "height": 900})
    page = browser.context.new_page()
    connect(page, served)
    cdp = browser.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(  # about 3 s for the file below
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 64 * 1024},
    )
    page.evaluate(
        """() => {
        window.progressSeen = [];
        new MutationObserver(() => {
            for (const status of document.querySelectorAll('#uploads .upload-status')) {
                window.progressSeen.push(status.textContent);
            }
        }).observe(document.querySelector('#uploads'), {childList: true, subtree: true, characterData: true});
    }"""
    )
    text = "Dropped file. " + "Expense reports are due on the fifth working day of each month. " * 3000
    page.evaluate(
        """text => {
        const files = new DataTransfer();
        files.items.add(new File([text], 'dropped.txt', {type: 'text/plain'}));
        const zone = document.querySelector('#dropzone');
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: files, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: files, bubbles: true, cancelable: true}));
    }""",
        text,
    )
    page.locator(".upload.done", has_text="dropped.txt").wait_for(timeout=60_000)
    percents = {int(p) for p in re.findall(r"Uploading… (\d+)%", " ".join(page.evaluate("window.progressSeen")))}
    assert len({p for p in percents if 0 < p < 100}) >= 3, f"no rising progress: {sorted(percents)}"
    page.locator("#document-list li.doc", has_text="dropped.txt").wait_for()
    assert browser.page_errors == []
