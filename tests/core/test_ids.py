from cdp.core.ids import uuid7


def test_uuid7_is_version_7_and_strictly_increasing_within_a_process() -> None:
    # when
    ids = [uuid7() for _ in range(20_000)]
    # then
    assert {u.version for u in ids} == {7}
    assert {u.variant for u in ids} == {"specified in RFC 4122"}
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
