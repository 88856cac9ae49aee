import base64
from datetime import UTC, datetime

import pytest

from commerce_jobs.devcluster.simulation import cri_log, pod_output

WHEN = datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC)


def cri_log_lines(text: str, stream: str = "stdout", when: datetime | None = None) -> list[str]:
    """``cri_log`` of text, as lines without their newline."""
    return cri_log(text.encode(), stream, when).decode().split("\n")[:-1]


def join_cri(lines: list[str]) -> str:
    """What a CRI log reader returns: full lines (F) end in a newline, partial ones (P) do not."""
    out = []
    for line in lines:
        _, _, tag, content = line.split(" ", 3)
        out.append(content + ("\n" if tag == "F" else ""))
    return "".join(out)


@pytest.mark.parametrize("text", ["", "one\n", "one\ntwo\n", "no newline", "a\n\nb", "\n\n", "tab\tand ünïcode\n"])
def test_cri_lines_read_back_to_the_exact_text(text: str) -> None:
    assert join_cri(cri_log_lines(text, when=WHEN)) == text


def test_cri_lines_carry_timestamp_and_stream() -> None:
    assert cri_log_lines("x\n", "stderr", when=WHEN) == ["2026-11-22T12:00:00.123456Z stderr F x"]


def test_output_repeats_and_rejects_unknown_streams() -> None:
    annotations = {
        "sim.commercejobs.dev/output": "ab\n",
        "sim.commercejobs.dev/output-repeat": "3",
        "sim.commercejobs.dev/output-stream": "elsewhere",
    }
    assert pod_output(annotations) == (b"ab\nab\nab\n", "stdout")


def test_binary_output_comes_from_base64_and_survives_the_cri_format() -> None:
    data = bytes(range(256)) * 2 + b"no newline at the end \xff"
    annotations = {"sim.commercejobs.dev/output-base64": base64.b64encode(data).decode()}
    output, _ = pod_output(annotations)
    assert output == data
    lines = cri_log(output, when=WHEN).split(b"\n")[:-1]
    joined = b"".join(line.split(b" ", 3)[3] + (b"\n" if line.split(b" ", 3)[2] == b"F" else b"") for line in lines)
    assert joined == data
