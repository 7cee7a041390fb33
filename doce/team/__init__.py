"""The team: staff add users (an invitation link, or a temporary password the user must
change at first login), deactivate them, make them staff and put them in groups.

Its own Django app (label ``team``) inside ``doce``: it knows users and groups only, never
projects or providers."""
