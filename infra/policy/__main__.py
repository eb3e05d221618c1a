"""The rules in ``infra/policies.py`` as a Pulumi policy pack:

cd infra && pulumi preview --policy-pack policy
"""

from pulumi_policy import PolicyPack

from infra.policy_pack import policies

PolicyPack(name="agents-policies", policies=policies())
