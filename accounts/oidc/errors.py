"""Why a single sign-on was refused: reason codes for the audit trail and the
texts the user sees (constants, so tests can assert them)."""

SSO_FAILED = (
    "Single sign-on did not complete. Please try again; if it keeps failing, "
    "contact your administrator."
)
NO_ALLOWED_ROLE = (
    "Your organisation account has no role in Kreo. Ask your administrator to "
    "give you access."
)
EMAIL_UNVERIFIED = (
    "Your identity provider has not confirmed your email address, so it "
    "cannot be used to create an account."
)
LINK_REQUIRED = (
    "An account with this email address already exists. Sign in with your "
    "password, then link single sign-on from your security page."
)
IDENTITY_TAKEN = "This sign-in is already linked to another Kreo account."
INACTIVE = "This account is disabled."
LINK_NEEDS_2FA = (
    "Confirm your two-factor code before linking single sign-on to this account."
)
NOT_CONFIGURED = "Single sign-on is not set up on this server."
UNKNOWN_IDP = "Unknown sign-in provider."
REAUTH_FAILED = (
    "Confirmation with your sign-in provider did not complete. Nothing was "
    "changed; please try again."
)
REAUTH_NOT_LINKED = (
    "No single sign-on is linked to this account, so it cannot be confirmed "
    "at a sign-in provider. Use your password."
)
REAUTH_WRONG_USER = (
    "You signed in at your provider as someone other than the person linked "
    "to this account. Nothing was changed."
)
REAUTH_STALE = (
    "Your sign-in provider did not confirm a fresh sign-in. Nothing was "
    "changed; please try again."
)

MESSAGES = {
    "no_allowed_role": NO_ALLOWED_ROLE,
    "email_unverified": EMAIL_UNVERIFIED,
    "link_required": LINK_REQUIRED,
    "identity_taken": IDENTITY_TAKEN,
    "inactive": INACTIVE,
    "reauth_not_linked": REAUTH_NOT_LINKED,
    "reauth_wrong_user": REAUTH_WRONG_USER,
    "reauth_stale": REAUTH_STALE,
}

# Reason codes refused with 403 (who you are is known; you may not come in).
FORBIDDEN = {"no_allowed_role", "inactive", "identity_taken"}


class SSOFailure(Exception):
    """An SSO response refused; ``code`` goes to the audit trail."""

    def __init__(self, code: str, *, user=None, next_url: str = ""):
        super().__init__(code)
        self.code = code
        self.user = user
        # Where a refused re-authentication sends the user back to.
        self.next_url = next_url

    @property
    def message(self) -> str:
        return MESSAGES.get(self.code, SSO_FAILED)
