"""Domain services of the billing gateway: no GraphQL here, only rules, queries and money."""
