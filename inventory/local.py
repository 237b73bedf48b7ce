"""The whole stack on this machine: pyinfra's embedded @local connector, no SSH."""

local = ["@local"]
