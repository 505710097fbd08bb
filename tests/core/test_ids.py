from cdp.core.ids import integer_id, uuid7


def test_uuid7_is_version_7_and_strictly_increasing_within_a_process() -> None:
    # when
    ids = [uuid7() for _ in range(20_000)]
    # then
    assert {u.version for u in ids} == {7}
    assert {u.variant for u in ids} == {"specified in RFC 4122"}
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_process_does_not_reuse_its_parents_random_bits() -> None:
    # given: the parent has drawn bits (they come from os.urandom in blocks)
    import os

    uuid7()
    read, write = os.pipe()
    # when: a forked child (a gunicorn or Celery worker) makes ids
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, b"".join(uuid7().bytes[8:] for _ in range(4)))
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64)
    parent = b"".join(uuid7().bytes[8:] for _ in range(4))
    # then: not the same bits (the parent's next block, which the child would have copied)
    assert len(child) == 32
    assert child != parent


def test_uuid7_values_behave_as_uuids() -> None:
    import pickle
    import uuid

    made = uuid7()
    assert made == uuid.UUID(str(made)) == pickle.loads(pickle.dumps(made))  # noqa: S301 — our own bytes
    assert hash(made) == hash(uuid.UUID(int=made.int))
    assert made.is_safe == uuid.SafeUUID.unknown


def test_integer_id_takes_ascii_digits_that_fit_a_bigint() -> None:
    assert [integer_id(v) for v in ("7", 42, "000123", "9" * 18)] == [7, 42, 123, int("9" * 18)]
    assert [integer_id(v) for v in ("²", "-1", "1.5", "", "9" * 19, None, " 7")] == [None] * 7
