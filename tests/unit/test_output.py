from commerce_jobs.output import tail_of


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_short_output_is_kept_whole() -> None:
    tail = tail_of([b"imported 3 products\n", b"done\n"], max_bytes=1024)
    assert (tail.text, tail.truncated, tail.total_bytes) == ("imported 3 products\ndone\n", False, 25)


def test_long_output_keeps_its_last_bytes_and_says_so() -> None:
    data = b"".join(f"line {i}\n".encode() for i in range(100_000))
    tail = tail_of(chunked(data, 4096), max_bytes=1000)
    assert tail.truncated
    assert tail.total_bytes == len(data)
    assert tail.text.endswith("line 99999\n")
    assert tail.text.startswith("[... output truncated: only the last 1000 of")
    body = tail.text.split("...]\n", 1)[1]
    assert body.encode() == data[-1000:]


def test_output_without_newlines_is_bounded() -> None:
    tail = tail_of(chunked(b"x" * 5_000_000, 65536), max_bytes=64 * 1024)
    assert tail.truncated
    assert len(tail.text.encode()) < 64 * 1024 + 200


def test_binary_output_becomes_readable_text() -> None:
    tail = tail_of([b"\x00\xff\xfe ok \xc3"], max_bytes=1024)
    assert tail.text == "\ufffd\ufffd\ufffd ok \ufffd"


def test_a_character_cut_at_the_start_of_the_tail_does_not_break_decoding() -> None:
    tail = tail_of(["é".encode() * 10], max_bytes=5)  # 5 bytes: half an é, then two whole ones
    body = tail.text.split("...]\n", 1)[1]
    assert body == "éé"  # the half é became U+FFFD, which made the tail longer than 5 bytes: it went first


def test_binary_output_stays_within_the_byte_limit_though_each_bad_byte_takes_three() -> None:
    tail = tail_of(chunked(b"\xff" * 100_000, 4096), max_bytes=1000)
    body = tail.text.split("...]\n", 1)[1]
    assert tail.truncated
    assert body == "\ufffd" * 333
    assert len(body.encode()) <= 1000


def test_terminal_escapes_and_controls_are_defused_but_tabs_and_newlines_kept() -> None:
    tail = tail_of([b"\x1b[31mred\x1b[0m\tdone\r\n\x07\x7f"], max_bytes=1024)
    assert tail.text == "\ufffd[31mred\ufffd[0m\tdone\r\n\ufffd\ufffd"
