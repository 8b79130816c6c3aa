"""Environments that are not JAX (envpool, gymnasium, a user's simulator), trained beside the compiled path: the
environments step on the host (`envs`), an actor thread acts with the policy (`actor`), and the learner runs the
algorithm's `learn` on each rollout, sharded like the compiled update (`runner`)."""
