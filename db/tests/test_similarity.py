"""The stuck-set similarity triage offers a farm bucket by: chains compared without their
wait states and across labels, as windows of one stack."""

from reprofarm_db.similarity import chains_of, one_stack, similarity

FARM = (
    "control-deadlock:sync.(*Mutex).Lock,main.lockLeftThenRight,main.(*w).iteration.func1"
    "|sync.(*Mutex).Lock,main.lockRightThenLeft,main.(*w).iteration.func2"
)
"""The farm's bucket: a rule's chains, from its anchor (sync.(*Mutex).Lock) outwards."""

CUT = "other-hang:unknown@internal/sync.(*Mutex).lockSlow,sync.(*Mutex).Lock,main.lockLeftThenRight"
"""One of its goroutines pasted without its header: no rule fired, the window is the top."""


def test_chains_lose_their_wait_states_and_unreadable_stacks() -> None:
    assert chains_of("other-hang:select@?+semacquire@a,b|c") == {("a", "b"), ("c",)}
    assert chains_of("other-hang:test-timeout") == frozenset()
    assert chains_of("no-hang:crash:panic") == frozenset()


def test_the_same_goroutine_with_and_without_its_header_is_the_same() -> None:
    whole = "other-hang:semacquire@sync.(*WaitGroup).Wait,main.main"
    cut = "other-hang:unknown@sync.(*WaitGroup).Wait,main.main"
    assert similarity(cut, whole).score == 1.0


def test_a_cut_paste_is_half_of_the_deadlock_whatever_its_label() -> None:
    near = similarity(CUT, FARM)
    assert (near.score, near.ours, near.theirs) == (0.5, 1, 2)
    ((ours, theirs),) = near.shared
    assert theirs == ("sync.(*Mutex).Lock", "main.lockLeftThenRight", "main.(*w).iteration.func1")
    assert ours[-1] == "main.lockLeftThenRight"


def test_windows_of_one_stack_overlap_at_their_ends_not_at_their_starts() -> None:
    assert one_stack(("x", "a", "b"), ("a", "b", "y"))  # offset by one frame
    assert one_stack(("a", "b"), ("z", "a", "b", "y"))  # one holds the other
    # Two socket reads start alike and end elsewhere: not one goroutine.
    reads = ("internal/poll.(*pollDesc).wait", "internal/poll.(*pollDesc).waitRead")
    assert not one_stack((*reads, "net.(*netFD).Read"), (*reads, "os.(*File).Read"))
    # One shared library function is not enough.
    assert not one_stack(("x", "sync.(*Mutex).Lock"), ("sync.(*Mutex).Lock", "y"))


def test_unrelated_signatures_share_nothing() -> None:
    other = "other-hang:chan receive@main.waitForever,main.main"
    assert similarity(other, FARM).score == 0.0
    assert similarity("other-hang:test-timeout", FARM).score == 0.0
