"""What a person is told when a CAPTCHA is not accepted (tests assert these)."""

CAPTCHA_REJECTED = "The CAPTCHA was not solved. Please try again."
CAPTCHA_UNAVAILABLE = (
    "The CAPTCHA check could not be completed just now, so the form was not "
    "accepted. Please try again in a few minutes."
)
# ALTCHA: a payload was sent but is not a solution this site can accept.
ALTCHA_MALFORMED = (
    "The CAPTCHA answer could not be read. Please solve the CAPTCHA again."
)
ALTCHA_FORGED = (
    "The CAPTCHA answer was not for a challenge from this site. "
    "Please solve the CAPTCHA again."
)
ALTCHA_EXPIRED = "The CAPTCHA expired before the form was sent. Please solve it again."
ALTCHA_REPLAYED = (
    "This CAPTCHA answer has been used already. Please solve the CAPTCHA again."
)
ALTCHA_WRONG = "The CAPTCHA answer is not correct. Please solve the CAPTCHA again."
