"""Single sign-on through Keycloak (OpenID Connect, mozilla-django-oidc).

An app of its own (label ``accounts_oidc``) so its models and migrations live
here, apart from the accounts app's.
"""
