"""serving: serve's options checked before anything listens, and its worker processes' command line."""

from __future__ import annotations

import pytest

from meshforge.serving import OptionError, ServeOptions, check, worker_argv


def _options(**changes) -> ServeOptions:
    return ServeOptions(**{"paths": ("specs/",), "xds_address": "127.0.0.1:0", **changes})


@pytest.mark.parametrize("changes, message, option", [
    ({"tls_cert_file": "c.pem"}, "--tls-cert-file and --tls-key-file go together", None),
    ({"tls_key_file": "k.pem"}, "--tls-cert-file and --tls-key-file go together", None),
    ({"client_ca_file": "ca.pem"}, "--client-ca-file needs --tls-cert-file", None),
    ({"operators": ("spiffe://x",)}, "--admin-operator names client certificates", None),
    ({"xds_address": "nonsense"}, "HOST:PORT", "--xds-address"),
    ({"admin_address": "127.0.0.1:99999"}, "", "--admin-address"),
    ({"workers": 2}, "--workers N needs --no-access-logs", None),
    ({"worker": True, "admin_address": "127.0.0.1:0"}, "--worker takes no --admin-address", None),
])
def test_options_serve_cannot_run_with_are_refused_naming_the_option(changes, message, option):
    with pytest.raises(OptionError) as e:
        check(_options(**changes))
    assert message in str(e.value) and e.value.option == option


def test_an_unusable_certificate_is_refused_before_anything_listens(tmp_path):
    (tmp_path / "c.pem").write_text("not a certificate")
    (tmp_path / "k.pem").write_text("not a key")
    with pytest.raises(OptionError) as e:
        check(_options(tls_cert_file=str(tmp_path / "c.pem"), tls_key_file=str(tmp_path / "k.pem")))
    assert "cannot use the certificate or key" in str(e.value) and e.value.option == "--tls-cert-file"


def test_plain_options_are_fine():
    assert check(_options()) is None
    assert check(_options(workers=4, access_logs=False)) is None


def test_a_worker_runs_the_same_specs_limits_and_tls_with_no_admin_and_no_access_logs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the command line below is parsed for real: its files exist
    for name in ("a", "-odd.yaml", "c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).mkdir() if name == "a" else (tmp_path / name).write_text("")
    argv = worker_argv(_options(paths=("a/", "-odd.yaml"), workers=3, access_logs=False, namespace="shop",
                                max_streams_per_peer=7, stall_timeout=2.5, max_pending_bytes=2 << 20,
                                tls_cert_file="c.pem", tls_key_file="k.pem", client_ca_file="ca.pem",
                                admin_address="127.0.0.1:9"))
    assert argv[1:4] == ["-m", "meshforge.cli", "serve"]
    flags = argv[4:argv.index("--")]
    pairs = {flags[i]: flags[i + 1] for i in range(len(flags)) if flags[i].startswith("--") and i + 1 < len(flags)
             and not flags[i + 1].startswith("--")}
    assert pairs == {"--xds-address": "{address}", "--namespace": "shop", "--max-streams-per-peer": "7",
                     "--stall-timeout": "2.5", "--max-pending-bytes": str(2 << 20), "--tls-cert-file": "c.pem",
                     "--tls-key-file": "k.pem", "--client-ca-file": "ca.pem", "--log-level": "info"}
    assert "--worker" in flags and "--no-access-logs" in flags and "--admin-address" not in flags
    assert argv[argv.index("--") + 1:] == ["a/", "-odd.yaml"]  # paths after "--": one that looks like an option too
    # what it says parses as a worker's options
    from meshforge.cli import serve

    ctx = serve.make_context("serve", argv[4:])
    assert ctx.params["worker"] and not ctx.params["access_logs"] and ctx.params["paths"] == ("a/", "-odd.yaml")
    assert ctx.params["namespace"] == "shop" and ctx.params["stall_timeout"] == 2.5
