"""pyinfra runs this before it reads the inventory and group_data (and so before any deploy).

It loads those files first, so that a syntax error or exception in one is reported as one
line naming the file and line (not as pyinfra's "internal exception" with a bug-report
invitation), and notes where they are, so that a refusal names the file of the bad setting.
"""

from stackdeploy.preflight import check_input_files

check_input_files()
