"""What every runner shares: which kubeconfig values are redacted, how output becomes lines."""

from __future__ import annotations

from controller.runners.base import kubeconfig_secrets, redact
from controller.runners.output import CUT, MAX_LINE, LineSplitter

KUBECONFIG = b"""
apiVersion: v1
kind: Config
users:
- name: token-user
  user: {token: s3cr3t-token}
- name: oidc
  user:
    auth-provider: {name: oidc, config: {client-id: public-id, client-secret: oidc-secret}}
- name: eks
  user:
    exec:
      command: aws
      env:
      - {name: AWS_SECRET_ACCESS_KEY, value: aws-secret-key}
"""


def test_tokens_client_secrets_and_exec_env_values_are_redacted() -> None:
    secrets = kubeconfig_secrets(KUBECONFIG)
    assert {"s3cr3t-token", "oidc-secret", "aws-secret-key"} <= set(secrets)
    assert "public-id" not in secrets
    line = "token s3cr3t-token, secret oidc-secret, key aws-secret-key"
    assert redact(line, secrets) == "token ***, secret ***, key ***"


def test_an_unreadable_kubeconfig_has_nothing_to_redact() -> None:
    assert kubeconfig_secrets(b"{not: [yaml") == []


def test_lines_are_reassembled_across_chunks_and_utf8_sequences() -> None:
    lines = LineSplitter()
    out = lines.feed(b"TASK [caf\xc3") + lines.feed(b"\xa9]\nok\npar") + lines.feed(b"tial")
    assert out + lines.close() == ["TASK [café]", "ok", "partial"]


def test_a_line_longer_than_the_limit_is_cut_once_and_the_rest_dropped() -> None:
    lines = LineSplitter()
    data = b"x" * (3 * MAX_LINE) + b"\nnext\n"
    out = [line for i in range(0, len(data), 1000) for line in lines.feed(data[i : i + 1000])]
    assert out == ["x" * MAX_LINE + CUT, "next"]
