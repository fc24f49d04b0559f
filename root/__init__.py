"""The schema root: merges every domain's Query, Mutation and Subscription, adds limits and extensions."""
