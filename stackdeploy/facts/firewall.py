"""The host firewall's rules that provision.py manages (iptables, filter table)."""

from __future__ import annotations

from pyinfra.api import FactBase, StringCommand

from stackdeploy.facts import unexpected_output


class FilterRules(FactBase[list[str]]):
    """The filter table, as ``iptables -S`` prints it: ``-P``, ``-N`` and ``-A`` lines.

    The whole table is read, not one chain, so that a chain not made yet is an answer (it has no
    lines) while an iptables that fails (no permission, no kernel support) fails the read; a
    per-chain ``-S``/``-C`` exits non-zero for both."""

    requires_command = "iptables"

    def command(self) -> StringCommand:
        return StringCommand("iptables", "-w", "-S")

    @staticmethod
    def default() -> list[str]:
        return []  # no iptables: no rules

    def process(self, output: list[str]) -> list[str]:
        rules = [line.strip() for line in output if line.strip()]
        if any(line.split()[0] not in ("-P", "-N", "-A") for line in rules):
            raise unexpected_output("FilterRules", output)
        return rules


def chain_rules(table: list[str], chain: str) -> list[str]:
    """One chain's lines of ``table``, as ``iptables -S CHAIN`` prints them (none if absent)."""
    return [line for line in table if line.split()[:2] in (["-N", chain], ["-A", chain])]


def jumps_to(table: list[str], parent: str, chain: str) -> bool:
    """Whether ``parent`` already has a rule that jumps to ``chain``."""
    return f"-A {parent} -j {chain}" in table
