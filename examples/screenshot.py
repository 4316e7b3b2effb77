"""Take docs/graphiql-nested-query.png: the nested query and its real response on the demo data.

Run from the repository root: ``python -m examples.screenshot``. It needs Chromium (Debian
package ``chromium``). GraphiQL's page loads its scripts from a CDN (unpkg.com), so on a
machine without access to it the page stays blank. This script therefore lays out the query
and the response that the API returned in a page of its own, served from 127.0.0.1. Headless
Chromium photographs that page, and nothing in the picture is typed in by hand.
"""

from __future__ import annotations

import argparse
import functools
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from examples.services import demo
from examples.walkthrough import EXAMPLES_DIR, REPOSITORY_ROOT

QUERY_PATH = EXAMPLES_DIR / "12-nested-query.graphql"
SCREENSHOT_PATH = REPOSITORY_ROOT / "docs" / "graphiql-nested-query.png"
WINDOW_SIZE = "1500,1300"
CHROMIUM_TIMEOUT_SECONDS = 120

# The switches keep headless Chromium from reaching any host but the page's: no background
# updates, sync or first-run work, and a new profile each time.
CHROMIUM_SWITCHES = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)

_TOKEN = re.compile(
    r"(?P<comment>#[^\n]*)|(?P<string>\"[^\"]*\")|(?P<keyword>\b(?:query|mutation)\b)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<colon>\s*:)?"
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Enrolink GraphQL: NestedResults</title>
<style>
  body {{ margin: 0; font-family: system-ui, sans-serif; background: #f3f4f6; color: #1f2937; }}
  header {{ display: flex; align-items: baseline; gap: 16px; padding: 10px 18px;
           background: #ffffff; border-bottom: 1px solid #e5e7eb; }}
  header h1 {{ font-size: 18px; margin: 0; }}
  header span {{ font-size: 13px; color: #6b7280; }}
  main {{ display: grid; grid-template-columns: 1fr 1fr; gap: 12px; padding: 12px; }}
  section {{ background: #ffffff; border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.12);
            overflow: hidden; }}
  section h2 {{ font-size: 12px; text-transform: uppercase; letter-spacing: .06em; margin: 0;
               padding: 8px 14px; color: #6b7280; border-bottom: 1px solid #f0f0f0; }}
  pre {{ margin: 0; padding: 10px 14px; font: 13px/1.45 "DejaVu Sans Mono", monospace;
        white-space: pre; }}
  pre.wrapped {{ white-space: pre-wrap; }}
  .comment {{ color: #6b7280; font-style: italic; }} .keyword {{ color: #b11a04; }}
  .field {{ color: #1f61a0; }} .string {{ color: #0b7a3e; }} .argument {{ color: #8b2bb9; }}
  .key {{ color: #1f61a0; }} .number {{ color: #2882f9; }} .null {{ color: #8b2bb9; }}
</style>
</head>
<body>
<header><h1>Enrolink GraphQL</h1><span>POST {endpoint} with the staff token of this run</span>
<span>Local page: the query sent and the response returned, laid out as in GraphiQL</span></header>
<main>
<section><h2>Query</h2><pre class="wrapped">{query}</pre></section>
<section><h2>Response</h2><pre>{response}</pre></section>
</main>
</body>
</html>
"""


def highlight_query(document: str) -> str:
    """Return the document as HTML, coloured like GraphiQL's editor."""
    parts: list[str] = []
    position = 0
    for match in _TOKEN.finditer(document):
        parts.append(html.escape(document[position : match.start()]))
        position = match.end()
        if match["comment"]:
            parts.append(f'<span class="comment">{html.escape(match["comment"])}</span>')
        elif match["string"]:
            parts.append(f'<span class="string">{html.escape(match["string"])}</span>')
        elif match["keyword"]:
            parts.append(f'<span class="keyword">{match["keyword"]}</span>')
        else:
            kind = "argument" if match["colon"] else "field"
            parts.append(f'<span class="{kind}">{match["name"]}</span>{match["colon"] or ""}')
    parts.append(html.escape(document[position:]))
    return "".join(parts)


def highlight_response(response: dict[str, Any]) -> str:
    """Return the response as indented JSON in HTML, coloured like GraphiQL's result pane."""
    text = html.escape(json.dumps(response, indent=2), quote=False)
    text = re.sub(r'"([^"]*)"(?=:)', r'<span class="key">"\1"</span>', text)
    text = re.sub(r': "([^"]*)"', r': <span class="string">"\1"</span>', text)
    text = re.sub(r": (-?[0-9.]+)", r': <span class="number">\1</span>', text)
    return re.sub(r": null", r': <span class="null">null</span>', text)


def render_page(document: str, response: dict[str, Any], endpoint: str) -> str:
    return _PAGE.format(
        endpoint=html.escape(endpoint),
        query=highlight_query(document),
        response=highlight_response(response),
    )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def photograph(page: str, output: Path) -> None:
    """Serve the page on 127.0.0.1 and save a headless Chromium screenshot of it to ``output``."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit(
            "Chromium was not found; install the Debian package with "
            "`apt-get update && apt-get install -y chromium`."
        )
    with tempfile.TemporaryDirectory(prefix="enrolink-screenshot-") as folder:
        site = Path(folder) / "site"
        site.mkdir()
        (site / "index.html").write_text(page, encoding="utf-8")
        handler = functools.partial(_QuietHandler, directory=str(site))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
            subprocess.run(
                [
                    chromium,
                    *CHROMIUM_SWITCHES,
                    f"--user-data-dir={Path(folder) / 'profile'}",
                    f"--window-size={WINDOW_SIZE}",
                    f"--screenshot={output}",
                    url,
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=CHROMIUM_TIMEOUT_SECONDS,
                check=True,
            )
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.screenshot", description=__doc__)
    parser.add_argument("--output", type=Path, default=SCREENSHOT_PATH, help="PNG file to write")
    args = parser.parse_args(argv)

    document = QUERY_PATH.read_text(encoding="utf-8")
    with demo() as run:
        response = run.walkthrough.execute(document)
        endpoint = f"{run.walkthrough.stack.base_url}/graphql"
    if "errors" in response:
        raise SystemExit(f"The nested query failed: {response['errors']}")

    photograph(render_page(document, response, endpoint), args.output)
    print(f"Wrote {args.output}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
