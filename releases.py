"""Print the release history of every host, the current release marked: pyinfra INVENTORY releases.py

Changes nothing. Each line: release id, action (deploy or rollback), result, who ran it
from where, the deploy repository's commit and when.
"""

import click
from pyinfra import host

from stackdeploy.desired import load_stack
from stackdeploy.facts import read_fact
from stackdeploy.facts.stack import ReleaseHistory
from stackdeploy.rollback import history_table

stack = load_stack(host)
click.echo(history_table(host.name, read_fact(host, ReleaseHistory, deploy_dir=stack.deploy_dir)))
