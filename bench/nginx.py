"""Start nginx from bench/nginx/*.conf with its own prefix: the `return 204` ceiling, the peer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from procs import Proc

CONF_DIR = Path(__file__).resolve().parent / "nginx"
MODULES = Path("/usr/lib/nginx/modules")
LUA_MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")
PEER_API_KEY = "phc_bench_peer"


def available(lua: bool = False) -> bool:
    if shutil.which("nginx") is None:
        return False
    return not lua or all((MODULES / m).exists() for m in LUA_MODULES)


def start(kind: str, port: int, work: Path, *, upstream_port: int = 0) -> Proc:
    """Run ``bench/nginx/<kind>.conf`` in the foreground on 127.0.0.1:``port``."""
    prefix = work / f"nginx-{kind}"
    for sub in ("", "client_body", "proxy"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    # As root, nginx's workers drop to nobody: they must be able to write their temp dirs.
    as_root = os.geteuid() == 0
    if as_root:
        for sub in ("client_body", "proxy"):
            (prefix / sub).chmod(0o777)
    modules = (
        "".join(f"load_module {MODULES / m};\n" for m in LUA_MODULES) if kind == "peer" else ""
    )
    common = (CONF_DIR / "common.conf").read_text()
    common = (
        common.replace("@USER@", "user nobody nogroup;" if as_root else "")
        .replace("@PREFIX@", str(prefix))
        .replace("@MODULES@", modules)
    )
    (prefix / "common.conf").write_text(common)
    conf = (CONF_DIR / f"{kind}.conf").read_text()
    conf = (
        conf.replace("@DIR@/common.conf", str(prefix / "common.conf"))
        .replace("@DIR@", str(CONF_DIR))
        .replace("@PREFIX@", str(prefix))
        .replace("@PORT@", str(port))
        .replace("@UPSTREAM_PORT@", str(upstream_port))
        .replace("@API_KEY@", PEER_API_KEY)
    )
    (prefix / "nginx.conf").write_text(conf)
    return Proc(
        f"nginx-{kind}",
        ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        work,
    )
