"""The README's client examples run as written against a live service (only the ports are the test's): every
Python block that talks to the service, and every `curl` block."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)
SERVICE_ADDRESSES = ("127.0.0.1:3000", "127.0.0.1:8081")
EXAMPLES = [b for b in PYTHON_BLOCK.findall(README.read_text()) if any(a in b for a in SERVICE_ADDRESSES)]
CURL_EXAMPLES = [b for b in BASH_BLOCK.findall(README.read_text()) if b.startswith("curl ")]
NUMBER = re.compile(r"\d\.\d+")


def test_the_readme_has_a_rest_a_grpc_and_a_feedback_example():
    assert any("tritonclient.http" in block for block in EXAMPLES)
    assert any("tritonclient.grpc" in block for block in EXAMPLES)
    assert any("/feedback" in block for block in EXAMPLES)
    assert CURL_EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda block: block.split("\n", 1)[0])
def test_a_client_example_runs_as_written(service, example):
    code = example.replace("127.0.0.1:3000", service.url.removeprefix("http://"))
    code = code.replace("127.0.0.1:8081", service.grpc)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=README.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    probabilities = [float(n) for n in NUMBER.findall(done.stdout)]
    assert probabilities and all(0 < p < 1 for p in probabilities), done.stdout


@pytest.mark.parametrize("example", CURL_EXAMPLES, ids=lambda block: block.split("\n", 1)[0][:60])
def test_a_curl_example_runs_as_written(service, example):
    code = example.replace("localhost:3000", service.url.removeprefix("http://"))
    done = subprocess.run(["bash", "-c", f"set -eo pipefail; {code}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    assert "error" not in answer and 0 < answer["probability"] < 1, done.stdout
