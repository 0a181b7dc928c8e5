"""The kernel layer: the only code that talks to BCC, libbpf, BTF, tracefs, ring memory and
map syscalls, and that turns their failures into :mod:`aiobpf.errors`. Private: the sources,
programs and operators build on it."""
