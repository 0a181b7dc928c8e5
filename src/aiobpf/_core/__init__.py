"""What aiobpf's packages share and no user imports: argument checks (``validate``), record
types (``records``, published through :mod:`aiobpf.lowlevel`), the kernel's monotonic clock as
wall-clock time (``clock``) and C strings as text (``text``). On the lowest floor with the
errors: it imports nothing of aiobpf's but them."""
