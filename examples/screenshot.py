"""Take docs/graphiql-nested-query.png: GraphiQL running the nested query on the demo data.

Run from the repository root: ``python -m examples.screenshot``. It needs Chromium (Debian
package ``chromium``) and npm with access to the npm registry.

Strawberry's GraphiQL page loads React, GraphiQL and its explorer plugin from unpkg.com. This
script fetches the same package versions from the npm registry at run time (``npm pack``, into a
temporary folder) and checks each file against the page's ``integrity`` hash. It then serves
the page that ``enrolink serve`` returns at /graphql from 127.0.0.1, with its unpkg.com URLs
pointing at those files, and forwards the page's POSTs to /graphql to the demo server. Headless
Chromium opens the page with the nested query and the staff token in GraphiQL's editors, clicks
the run button and photographs the page once the response is shown. The unpacked packages and
the browser profile are deleted after the run (npm's own cache may keep the tarballs), and none
of them belongs in the repository.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import functools
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from examples.services import demo
from examples.walkthrough import EXAMPLES_DIR, REPOSITORY_ROOT

QUERY_PATH = EXAMPLES_DIR / "12-nested-query.graphql"
SCREENSHOT_PATH = REPOSITORY_ROOT / "docs" / "graphiql-nested-query.png"
WINDOW_WIDTH = 1500
WINDOW_HEIGHT = 1100
NPM_TIMEOUT_SECONDS = 300
CHROMIUM_TIMEOUT_SECONDS = 60
POLL_INTERVAL_SECONDS = 0.25

# An asset of Strawberry's GraphiQL page, as in
# src="https://unpkg.com/react@18.2.0/umd/react.production.min.js" integrity="sha384-…".
_ASSET = re.compile(
    r'(?:src|href)="https://unpkg\.com/(?P<package>(?:@[^/@"]+/)?[^/@"]+)@(?P<version>[^/"]+)'
    r'/(?P<path>[^"]+)"\s+integrity="(?P<integrity>sha384-[^"]+)"'
)
# The folder of the served site that contains the unpacked npm packages.
VENDOR_FOLDER = "vendor"

# The switches keep headless Chromium from reaching any host but 127.0.0.1: no background
# updates, sync or first-run work, every other host name unresolvable, and a new profile each
# time. --remote-debugging-pipe takes DevTools protocol commands on fd 3 and writes replies
# and events to fd 4.
CHROMIUM_SWITCHES = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-pipe",
)

# JavaScript run in the page. GraphiQL 3 marks its parts with these class names.
_EDITOR_READY = """(() => {
  const editor = document.querySelector('.graphiql-query-editor .CodeMirror');
  return Boolean(editor && editor.CodeMirror.getValue().includes('NestedResults')
    && document.querySelector('.graphiql-execute-button'));
})()"""
_SHOW_HEADERS = """(() => {
  const tab = [...document.querySelectorAll('.graphiql-editor-tools button')]
    .find((button) => button.textContent.trim() === 'Headers');
  if (tab) tab.click();
  return Boolean(tab);
})()"""
_RUN_QUERY = "document.querySelector('.graphiql-execute-button').click(), true"
_RESPONSE_TEXT = """(() => {
  const result = document.querySelector('.result-window .CodeMirror');
  return result ? result.CodeMirror.getValue() : '';
})()"""


def download_assets(page: str, site: Path) -> str:
    """Unpack the page's unpkg.com packages from npm into ``site`` and return the page with
    each asset URL rewritten to its local copy.

    Raises SystemExit when npm fails or a file does not match the page's integrity hash.
    """
    assets = list(_ASSET.finditer(page))
    if not assets:
        raise SystemExit("The GraphiQL page names no unpkg.com assets; has Strawberry changed it?")
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm was not found; install Node.js and npm (Debian package `npm`).")

    packages = sorted({f"{asset['package']}@{asset['version']}" for asset in assets})
    tarballs = site.parent / "npm"
    tarballs.mkdir()
    packed = subprocess.run(
        [npm, "pack", "--silent", "--json", "--pack-destination", str(tarballs), *packages],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_SECONDS,
        check=False,
    )
    if packed.returncode != 0:
        raise SystemExit(f"npm pack {' '.join(packages)} failed:\n{packed.stderr}")
    for entry in json.loads(packed.stdout):
        target = site / VENDOR_FOLDER / f"{entry['name']}@{entry['version']}"
        with tarfile.open(tarballs / entry["filename"]) as archive:
            archive.extractall(target.parent / "unpacked", filter="data")
        # npm tarballs keep their files under package/.
        (target.parent / "unpacked" / "package").rename(target)
        (target.parent / "unpacked").rmdir()

    for asset in assets:
        local = site / VENDOR_FOLDER / f"{asset['package']}@{asset['version']}" / asset["path"]
        digest = base64.b64encode(hashlib.sha384(local.read_bytes()).digest()).decode("ascii")
        if f"sha384-{digest}" != asset["integrity"]:
            raise SystemExit(
                f"{asset['package']}@{asset['version']}/{asset['path']} from npm does not match "
                f"the page's integrity hash {asset['integrity']} (sha384-{digest})."
            )
    return page.replace("https://unpkg.com/", f"/{VENDOR_FOLDER}/")


class _SiteHandler(SimpleHTTPRequestHandler):
    """Serves the GraphiQL page at /graphql and the packages under /vendor/, and forwards POSTs
    to /graphql to the API, so the page and the API share one origin as under enrolink serve."""

    def __init__(self, *args: Any, page: bytes, api_url: str, **kwargs: Any) -> None:
        self.page = page
        self.api_url = api_url
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/graphql":
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/graphql":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        forwarded = {
            name: value
            for name, value in self.headers.items()
            if name.lower() in {"authorization", "content-type", "accept"}
        }
        response = httpx.post(self.api_url, content=body, headers=forwarded, timeout=30.0)
        self.send_response(response.status_code)
        self.send_header("Content-Type", response.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(response.content)))
        self.end_headers()
        self.wfile.write(response.content)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class DevToolsPipe:
    """A headless Chromium driven over the DevTools protocol on a pipe (fd 3 in, fd 4 out)."""

    def __init__(self, chromium: str, profile: Path) -> None:
        commands_read, self._commands = os.pipe()
        self._events, events_write = os.pipe()

        def move_pipes_to_3_and_4() -> None:
            # Copies at 10 or above first, so that neither dup2 overwrites the other pipe's end.
            high_read = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
            high_write = fcntl.fcntl(events_write, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self.process = subprocess.Popen(
            [chromium, *CHROMIUM_SWITCHES, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=move_pipes_to_3_and_4,
        )
        os.close(commands_read)
        os.close(events_write)
        self._buffer = b""
        self._next_id = 0
        self.session_id: str | None = None

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command to the attached page (or the browser) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session_id is not None and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session_id
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + CHROMIUM_TIMEOUT_SECONDS
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"Chromium rejected {method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"The page raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str) -> Any:
        """Evaluate ``expression`` until it is truthy and return its value."""
        deadline = time.monotonic() + CHROMIUM_TIMEOUT_SECONDS
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"GraphiQL did not show {what} within {CHROMIUM_TIMEOUT_SECONDS} s."
                )
            time.sleep(POLL_INTERVAL_SECONDS)
        return value

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.process.wait(timeout=10)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._commands)
            os.close(self._events)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._events], [], [], max(0.0, remaining))
            if not ready:
                raise TimeoutError(f"Chromium sent nothing for {CHROMIUM_TIMEOUT_SECONDS} s.")
            chunk = os.read(self._events, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited (status {self.process.poll()}).")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed


def photograph(url: str, profile: Path, output: Path) -> str:
    """Run the query that ``url`` puts in GraphiQL, save a screenshot to ``output`` and return
    the response text that GraphiQL shows."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit(
            "Chromium was not found; install the Debian package with "
            "`apt-get update && apt-get install -y chromium`."
        )
    browser = DevToolsPipe(chromium, profile)
    try:
        target = browser.call("Target.createTarget", url="about:blank")
        attached = browser.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        browser.session_id = attached["sessionId"]
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=WINDOW_WIDTH,
            height=WINDOW_HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.call("Page.navigate", url=url)
        browser.wait_for(_EDITOR_READY, "the query in its editor")
        browser.wait_for(_SHOW_HEADERS, "its Headers tab")
        browser.evaluate(_RUN_QUERY)
        response_text: str = browser.wait_for(_RESPONSE_TEXT, "a response")
        # Let the result editor finish painting before the picture is taken.
        time.sleep(1.0)
        picture = browser.call("Page.captureScreenshot", format="png")
        output.write_bytes(base64.b64decode(picture["data"]))
        return response_text
    finally:
        browser.close()


def take_screenshot(api_url: str, token: str, document: str, output: Path) -> str:
    """Serve GraphiQL with local assets, photograph it running ``document`` and return the
    response text that GraphiQL shows."""
    page = httpx.get(api_url, headers={"Accept": "text/html"}, timeout=30.0)
    page.raise_for_status()
    with tempfile.TemporaryDirectory(prefix="enrolink-screenshot-") as folder:
        site = Path(folder) / "site"
        site.mkdir()
        local_page = download_assets(page.text, site)
        handler = functools.partial(
            _SiteHandler, page=local_page.encode("utf-8"), api_url=api_url, directory=str(site)
        )
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            # Strawberry's page reads the query editor from ?q= and the headers editor from
            # ?headers=.
            parameters = urlencode(
                {"q": document, "headers": json.dumps({"Authorization": f"Bearer {token}"})},
                # The page decodes with decodeURIComponent, which leaves a + as it is.
                quote_via=quote,
            )
            url = f"http://127.0.0.1:{server.server_address[1]}/graphql?{parameters}"
            return photograph(url, Path(folder) / "profile", output)
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
        expected = run.walkthrough.execute(document)
        if "errors" in expected:
            raise SystemExit(f"The nested query failed: {expected['errors']}")
        api_url = f"{run.walkthrough.stack.base_url}/graphql"
        displayed = take_screenshot(api_url, run.walkthrough.token, document, args.output)
    try:
        matches = json.loads(displayed) == expected
    except ValueError:
        matches = False
    if not matches:
        raise SystemExit(f"GraphiQL showed a response other than the API's:\n{displayed}")
    print(f"Wrote {args.output}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
