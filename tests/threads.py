"""Running one computation at 1 and 2 threads: the check behind "results are
bitwise identical whatever the thread count"."""
import numpy as np

import fastnn as fn


def at_thread_counts(run, counts=(1, 2)):
    """[run() at each thread count]; fastnn's thread count is restored after."""
    old = fn.get_num_threads()
    try:
        results = []
        for n in counts:
            fn.set_num_threads(n)
            results.append(run())
        return results
    finally:
        fn.set_num_threads(old)


def assert_same_at_1_and_2_threads(run):
    """run() returns arrays; each is bitwise equal at 1 and 2 threads. Returns the
    1-thread results."""
    one, two = at_thread_counts(run)
    assert len(one) == len(two)
    for k, (a, b) in enumerate(zip(one, two)):
        np.testing.assert_array_equal(a, b, err_msg=f"result #{k}")
    return one
