"""HANDLE's bijection: file and directory handles are numbered apart, as FUSE's opcodes
keep them apart; reuse or confusion within one kind is still a departure."""

import pytest

from pagefs.conformance import targets
from pagefs.conformance.session import UNBOUND_BASE, Bindings, Session
from pagefs.spec import Config
from pagefs.spec.datatypes import O_RDWR, HandleKind

FILE, DIR = HandleKind.FILE, HandleKind.DIR


@pytest.fixture
def virtiofsd_session(root_only):
    with targets.factory("virtiofsd:cache=none") as factory:
        session = Session(factory, Config())
        try:
            yield session
        finally:
            session.close()


def test_virtiofsd_numbers_a_file_and_a_directory_handle_alike_and_that_conforms(
        virtiofsd_session):
    s = virtiofsd_session
    created = s.step("CREATE", (0, 1, b"a", O_RDWR, 0o644))
    opened = s.step("OPENDIR", (0, 1))
    assert created.observed.value[1] == opened.observed.value  # both fh 0 in virtiofsd
    for op, args in [("WRITE", (0, 1, 0, b"x")), ("READ", (0, 1, 0, 4)), ("READDIR", (0, 2)),
                     ("RELEASEDIR", (0, 2)), ("READ", (0, 1, 0, 4))]:
        check = s.step(op, args)
        assert check.ok, check.line()
    assert [c.ok for c in (created, opened)] == [True, True]


def test_virtiofsd_reusing_a_released_file_handle_number_is_still_a_departure(
        virtiofsd_session):
    s = virtiofsd_session
    assert s.step("CREATE", (0, 1, b"a", O_RDWR, 0o644)).ok
    assert s.step("RELEASE", (0, 1)).ok
    again = s.step("CREATE", (0, 1, b"b", O_RDWR, 0o644))
    assert not again.ok, again.line()


def test_one_number_may_name_a_file_and_a_directory_handle_but_not_two_of_one_kind():
    b = Bindings().bind_handle(0, FILE, 0, 1)
    assert b is not None
    both = b.bind_handle(0, DIR, 0, 2)
    assert both is not None
    assert b.bind_handle(0, FILE, 0, 2) is None  # two live (or one released) file handles
    assert both.bind_handle(0, DIR, 0, 3) is None
    assert both.handle_to_target(0, FILE, 1) == both.handle_to_target(0, DIR, 2) == 0
    # A directory handle in a file request: its number would name the file handle, so a
    # number the target never gave goes instead; with no such clash, its own number.
    assert both.handle_to_target(0, FILE, 2) == UNBOUND_BASE + 2
    only_dir = Bindings().bind_handle(0, DIR, 7, 1)
    assert only_dir.handle_to_target(0, FILE, 1) == 7
