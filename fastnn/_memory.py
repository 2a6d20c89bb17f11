"""Refuse allocations the machine cannot hold, before the kernel's OOM killer
ends the process: Linux overcommits, so numpy's MemoryError rarely fires."""


def available_bytes():
    """MemAvailable from /proc/meminfo, or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check(nbytes, what):
    avail = available_bytes()
    if avail is not None and nbytes > avail:
        raise MemoryError(f"{what} needs {nbytes / 2**30:.2f} GiB but only "
                          f"{avail / 2**30:.2f} GiB of memory is available")
