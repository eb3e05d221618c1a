"""The rules in ``infra/policies.py`` as a Pulumi policy pack:

pulumi preview --policy-pack infra/policy     (from the repository root)
"""

from pulumi_policy import PolicyPack

from infra.policy_pack import policies

PolicyPack(name="agents-policies", policies=policies())
