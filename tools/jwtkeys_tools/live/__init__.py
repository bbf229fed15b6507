"""`make live-aws`: a smoke suite that deploys a throw-away copy of a stage and removes it."""
