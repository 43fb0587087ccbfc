from uacregistrant.sip.randomness import BufferedRandom


def test_bytes_come_from_the_source_in_chunks_and_never_twice():
    calls = []
    counter = iter(range(1_000_000))

    def source(n):
        calls.append(n)
        return bytes(next(counter) % 256 for _ in range(n))

    draw = BufferedRandom(source, chunk=64)
    out = b"".join(draw(10) for _ in range(20))
    assert len(out) == 200
    assert calls == [64, 64, 64, 64]  # 6 draws of 10 per chunk of 64
    # Consecutive, nothing reused: the source's counter shows through in order
    # except for the 4 bytes left unused at the end of each chunk.
    assert out[:60] == bytes(range(60))
    assert out[60:70] == bytes(range(64, 74))


def test_a_large_draw_gets_its_own_chunk():
    draw = BufferedRandom(lambda n: b"x" * n, chunk=8)
    assert draw(100) == b"x" * 100
