"""What `pulumi up` runs: the whole stack, from Pulumi.<stack>.yaml."""

from infra.stack import build

build()
