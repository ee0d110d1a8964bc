"""What people read: the rich terminal report (`terminal`) and the figures (`plots`)."""
