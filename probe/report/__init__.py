"""What people read, all of it: the rich terminal report (`terminal`, `listings`), the report page (`page`: report.html
and report.md), the plan's text (`plan_text`) and the figures (`plots`, `figures`)."""
