"""Resource limits for the processes inside the sandbox (the judge's and the program's)."""

import resource

MB = 1024 * 1024


def apply(lim: dict, open_files: int | None = None) -> None:
    """CPU seconds, address space, file size and no core dumps from the run's limits; optionally open
    files."""
    pairs = [(resource.RLIMIT_CPU, lim["cpu_s"]), (resource.RLIMIT_AS, lim["memory_mb"] * MB),
             (resource.RLIMIT_FSIZE, lim["file_mb"] * MB), (resource.RLIMIT_CORE, 0)]
    if open_files is not None:
        pairs.append((resource.RLIMIT_NOFILE, open_files))
    for res, value in pairs:
        resource.setrlimit(res, (value, value))
