"""hark's Gradio demo page: one tab per model family.

A family joins by adding one line to FAMILIES: its name (the keyword the service passes its model
under) mapped to the tab's title and a builder that lays out the tab inside an open gr.Tab.
"""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from services.demo import classifier, codec, extractor, transcriber

# Builder signature: (loaded model, zero-arg getter, or None for "load the shipped one") -> None.
TabBuilder = Callable[[Any], None]

FAMILIES: dict[str, tuple[str, TabBuilder]] = {
    "transcriber": (transcriber.TITLE, transcriber.build_tab),
    "extractor": (extractor.TITLE, extractor.build_tab),
    "codec": (codec.TITLE, codec.build_tab),
    "classifier": (classifier.TITLE, classifier.build_tab),
}

# Gradio 6 takes theme and css in launch(); a Blocks mounted by BentoML is never launched, and its
# page then fails with a 500 on the unset fields. apply_page_style sets them up front.
THEME = gr.themes.Default()  # its fonts ship inside gradio: no CDN requests, the page works offline
# Keep the piano roll at its container's width instead of letterboxing it.
CSS = """
#hark-piano-roll img { width: 100%; height: auto; object-fit: contain; }
"""


def apply_page_style(blocks: gr.Blocks) -> gr.Blocks:
    """Give the Blocks what launch() would have set, so any ASGI mount can render it."""
    blocks.theme = THEME
    blocks.css = CSS
    blocks.js = ""
    blocks.head = ""
    blocks.css_paths = []
    blocks.head_paths = []
    # launch() shows a footer; BentoML's mount leaves none. Keep the API and settings links.
    blocks.footer_links = ["api", "settings"]
    # Computes theme_css / stylesheets / theme_hash from the fields above; Gradio's own
    # mount_gradio_app calls the same private method.
    blocks._set_html_css_theme_variables()
    return blocks


def build_demo(**models: Any) -> gr.Blocks:
    """The demo Blocks with a tab for each family passed as a keyword (model or getter).

    With no keywords every family gets a tab that loads its shipped model on first use.
    """
    unknown = set(models) - set(FAMILIES)
    if unknown:
        raise ValueError(f"no demo tab for {sorted(unknown)}; known: {sorted(FAMILIES)}")
    chosen = models or {name: None for name in FAMILIES}
    # Analytics off: it phones home on construction, and the page must work offline.
    # delete_cache prunes uploads and outputs older than an hour from Gradio's cache.
    with gr.Blocks(title="hark", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# hark\nSmall audio models, served. Each tab is one model family.")
        with gr.Tabs():
            for name, (title, build_tab) in FAMILIES.items():
                if name in chosen:
                    with gr.Tab(title, id=name):
                        build_tab(chosen[name])
    return apply_page_style(demo)


__all__ = ["FAMILIES", "apply_page_style", "build_demo"]
