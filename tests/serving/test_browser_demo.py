"""The demo page at /ui in a real browser: each tab runs an input and shows its result.

Headless Debian chromium driven by selenium through chromium-driver (`make test` installs both;
without them these tests skip and say so). The transcriber and extractor tabs run the example
their examples list shows (the shipped example files, served with stand-in models); the codec
and classifier tabs have no shipped examples, so they get a generated clip uploaded. Screenshots
go to test-artifacts/ui/ (ignored by git) for a person to look at.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from benchmarks.speechlike import speech_like
from conftest import REPO, Server, start_server, stop_server

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHOTS = REPO / "test-artifacts" / "ui"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1800")
WAIT_S = 60

try:
    import selenium  # noqa: F401
except ImportError:
    HAVE_SELENIUM = False
else:
    HAVE_SELENIUM = True

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER and HAVE_SELENIUM),
    reason="the browser tests need Debian's chromium and chromium-driver (make system-deps) and selenium "
           "(hark[dev])")


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory, stand_in_model_dir: Path) -> Iterator[Server]:
    """One worker (Gradio's queue keeps its jobs per process), stand-in models, shipped examples."""
    root = tmp_path_factory.mktemp("ui_artifacts")
    for family in ("transcriber", "codec", "extractor", "classifier"):
        shutil.copytree(stand_in_model_dir.parent / family, root / family,
                        ignore=shutil.ignore_patterns("examples"))
    for family in ("transcriber", "extractor"):
        shutil.copytree(REPO / "artifacts" / family / "examples", root / family / "examples")
    # Its own Gradio cache: servers sharing /tmp/gradio delete each other's cached examples on exit.
    srv = start_server("services.hark:Hark", tmp_path_factory.mktemp("ui_server"), root / "transcriber",
                       HARK_WORKERS="1", GRADIO_TEMP_DIR=str(tmp_path_factory.mktemp("gradio")))
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="hark-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # Gradio re-renders while the page loads: elements found early can go stale, so look again.
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def _visible_panel(driver):
    from selenium.webdriver.common.by import By

    return next((p for p in driver.find_elements(By.CSS_SELECTOR, "[role='tabpanel']") if p.is_displayed()), None)


def _open_tab(driver, server: Server, title: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{server.url}/ui/")
    _wait(driver, lambda d: "Loading..." not in d.find_element(By.TAG_NAME, "body").text)
    tab = _wait(driver, lambda d: next(
        (b for b in d.find_elements(By.CSS_SELECTOR, "button[role='tab']") if b.text == title), None))
    _press(driver, tab)


def _press(driver, element) -> None:
    # A script click: Gradio's toasts and the footer may lie over a button a mouse would hit.
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", element)


def _labelled(shown: str, text: str) -> bool:
    """Whether a button showing `shown` is labelled `text`: Gradio cuts long example labels."""
    shown = shown.strip()
    cut = shown.rstrip(".…").rstrip()
    return shown == text or (cut != shown and len(cut) >= 10 and text.startswith(cut))


def _click(driver, text: str) -> None:
    """Press the open tab's button labelled `text`, once the page has rendered it."""
    from selenium.webdriver.common.by import By

    def find(d):
        panel = _visible_panel(d)
        return panel and next((b for b in panel.find_elements(By.TAG_NAME, "button")
                               if _labelled(b.text, text) and b.is_displayed()), None)

    _press(driver, _wait(driver, find))


def _result_image(driver) -> str:
    """Wait until the open tab shows a picture (piano roll, spectrograms or chart): the result is
    in. Returns the tab's text."""
    from selenium.webdriver.common.by import By

    def shown(d):
        panel = _visible_panel(d)
        return panel and any(i.is_displayed() and i.size["height"] > 50 for i in panel.find_elements(By.TAG_NAME, "img"))

    _wait(driver, shown)
    return _visible_panel(driver).text


def _upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    field = _wait(driver, lambda d: (_visible_panel(d) or d).find_elements(By.CSS_SELECTOR, "input[type='file']"))
    field[0].send_keys(str(path))
    _filled(driver)


def _filled(driver) -> None:
    """Wait until every audio input of the open tab holds its file (a player replaces each drop
    zone): pressing the button before would run the handler without its input."""
    _wait(driver, lambda d: "Drop Audio Here" not in _visible_panel(d).text)


def _speech_like(path: Path, seconds: float = 2.0, sr: int = 16000) -> Path:
    """A synthetic talker the classifier's voice check accepts (a steady tone it refuses)."""
    sf.write(path, speech_like(seconds, sr=sr), sr, subtype="PCM_16")
    return path


def _shot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), name
    return path


def test_transcriber_tab_runs_its_example(ui_server: Server, browser) -> None:
    from services.demo.transcriber import example_files

    _open_tab(browser, ui_server, "Transcriber")
    _click(browser, Path(example_files(REPO / "artifacts" / "transcriber" / "examples")[0]).name)
    _filled(browser)
    _click(browser, "Transcribe")
    text = _result_image(browser)
    assert "notes" in text.lower()
    assert _shot(browser, "transcriber").stat().st_size > 10_000


def test_extractor_tab_runs_its_example(ui_server: Server, browser) -> None:
    from services.demo.extractor import examples

    _open_tab(browser, ui_server, "Extractor")
    _click(browser, examples(REPO / "artifacts" / "extractor" / "examples")[0]["title"])
    _filled(browser)
    _click(browser, "Extract")
    text = _result_image(browser)
    assert "How well it works today" in text and "dB of the mixture" in text
    assert _shot(browser, "extractor").stat().st_size > 10_000


@pytest.mark.parametrize("title, button", [("Codec", "Encode and decode"), ("Classifier", "Classify")])
def test_tab_without_examples_runs_an_upload(ui_server: Server, browser, tmp_path: Path, title: str,
                                             button: str) -> None:
    _open_tab(browser, ui_server, title)
    _upload(browser, _speech_like(tmp_path / "speech.wav"))
    _click(browser, button)
    text = _result_image(browser)
    assert ("bytes" in text) if title == "Codec" else ("fused over" in text)
    assert _shot(browser, title.lower()).stat().st_size > 10_000
