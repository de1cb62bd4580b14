"""The login state machine's decision: what has been proved, what is enrolled, what is required."""
from idp.authn import steps
from idp.authn.steps import (ACR_MFA, ACR_PASSWORD, ACR_PHISHING_RESISTANT, PASSWORD, RECOVERY, TOTP, WEBAUTHN,
                             Ask, Done, Enrol, next_step)

PWD = steps.password_proof()
OTP = steps.totp_proof()
KEY = steps.webauthn_proof(hardware=True, user_verified=False)
PASSKEY_UV = steps.webauthn_proof(hardware=False, user_verified=True)


def test_a_login_starts_with_a_password_or_a_passkey():
    assert next_step([], enrolled={PASSWORD, TOTP}, target=ACR_MFA, required=ACR_MFA) == Ask((PASSWORD, WEBAUTHN))


def test_password_alone_reaches_the_password_level():
    assert next_step([PWD], enrolled={PASSWORD}, target=ACR_PASSWORD) == Done(ACR_PASSWORD, ("pwd",))


def test_a_person_with_a_second_factor_is_always_asked_for_it():
    assert next_step([PWD], enrolled={PASSWORD, TOTP}, target=ACR_PASSWORD) == Ask((TOTP,))
    assert next_step([PWD], enrolled={PASSWORD, RECOVERY}, target=ACR_PASSWORD) == Done(ACR_PASSWORD, ("pwd",))


def test_mfa_target_asks_for_an_enrolled_second_factor():
    step = next_step([PWD], enrolled={PASSWORD, TOTP, RECOVERY}, target=ACR_MFA)
    assert step == Ask((TOTP, RECOVERY))


def test_password_and_totp_reach_mfa_with_rfc8176_values():
    assert next_step([PWD, OTP], enrolled={PASSWORD, TOTP}, target=ACR_MFA, required=ACR_MFA) == \
        Done(ACR_MFA, ("pwd", "otp", "mfa"))


def test_recovery_code_is_a_second_factor():
    step = next_step([PWD, steps.recovery_proof()], enrolled={PASSWORD, TOTP, RECOVERY}, target=ACR_MFA, required=ACR_MFA)
    assert step == Done(ACR_MFA, ("pwd", "otp", "mfa"))


def test_voluntary_mfa_without_a_second_factor_ends_at_the_password_level():
    assert next_step([PWD], enrolled={PASSWORD}, target=ACR_MFA) == Done(ACR_PASSWORD, ("pwd",))


def test_required_mfa_without_a_second_factor_leads_to_enrolment():
    assert next_step([PWD], enrolled={PASSWORD}, target=ACR_MFA, required=ACR_MFA) == Enrol((WEBAUTHN, TOTP))


def test_phishing_resistant_level_needs_webauthn_even_after_totp():
    assert next_step([PWD, OTP], enrolled={PASSWORD, TOTP, WEBAUTHN}, target=ACR_PHISHING_RESISTANT,
                     required=ACR_MFA) == Ask((WEBAUTHN,))
    assert next_step([PWD, OTP], enrolled={PASSWORD, TOTP}, target=ACR_PHISHING_RESISTANT,
                     required=ACR_PHISHING_RESISTANT) == Enrol((WEBAUTHN,))


def test_voluntary_level_above_the_required_one_is_best_effort():
    assert next_step([PWD, OTP], enrolled={PASSWORD, TOTP}, target=ACR_PHISHING_RESISTANT,
                     required=ACR_MFA) == Done(ACR_MFA, ("pwd", "otp", "mfa"))
    assert next_step([PWD], enrolled={PASSWORD}, target=ACR_PHISHING_RESISTANT,
                     required=ACR_MFA) == Enrol((WEBAUTHN, TOTP))


def test_password_and_security_key_are_phishing_resistant():
    step = next_step([PWD, KEY], enrolled={PASSWORD, WEBAUTHN}, target=ACR_PHISHING_RESISTANT, required=ACR_MFA)
    assert step == Done(ACR_PHISHING_RESISTANT, ("pwd", "hwk", "user", "mfa"))  # RFC 8176 user: presence


def test_user_verified_passkey_alone_is_two_factors():
    step = next_step([PASSKEY_UV], enrolled={WEBAUTHN}, target=ACR_PHISHING_RESISTANT, required=ACR_MFA)
    assert step == Done(ACR_PHISHING_RESISTANT, ("swk", "user", "mfa"))


def test_passkey_without_user_verification_asks_for_another_factor():
    assert next_step([KEY], enrolled={PASSWORD, WEBAUTHN, TOTP}, target=ACR_MFA, required=ACR_MFA) == Ask((TOTP, PASSWORD))


def test_the_same_factor_twice_is_not_two_factors():
    assert steps.amr_for([PWD, PWD]) == ["pwd"]
    assert steps.acr_of([PWD, PWD]) == ACR_PASSWORD


def test_levels_include_weaker_ones_and_unknown_values_are_ignored():
    assert steps.meets(ACR_PHISHING_RESISTANT, ACR_MFA) and not steps.meets(ACR_PASSWORD, ACR_MFA)
    assert steps.first_supported(["urn:other:gold", ACR_MFA, ACR_PASSWORD]) == ACR_MFA
    assert steps.first_supported(["urn:other:gold"]) is None
    assert steps.stronger(None, ACR_MFA, "urn:other:gold") == ACR_MFA


def test_a_step_up_starts_from_the_sessions_proofs():
    stored = steps.dump_proofs([PWD, steps.upstream_proof(["fed", "otp"], ACR_MFA)])
    assert steps.load_proofs(stored) == [PWD, steps.upstream_proof(["fed", "otp"], ACR_MFA)]
    assert next_step(steps.load_proofs(steps.dump_proofs([PWD])), enrolled={PASSWORD, TOTP}, target=ACR_MFA) \
        == Ask((TOTP,))


# An upstream sign-in is what the provider's mapping says it is, never more.

UPSTREAM_PWD = steps.upstream_proof(["fed", "pwd"], ACR_PASSWORD)  # the upstream said amr pwd, mapped to pwd


def test_an_upstream_password_and_ours_are_one_factor_and_the_password_is_not_asked_after_it():
    assert steps.amr_for([UPSTREAM_PWD, PWD]) == ["fed", "pwd"] and steps.acr_of([UPSTREAM_PWD, PWD]) == ACR_PASSWORD
    assert next_step([UPSTREAM_PWD], enrolled={PASSWORD}, target=ACR_MFA, required=ACR_MFA) == Enrol((WEBAUTHN, TOTP))
    assert next_step([UPSTREAM_PWD], enrolled={PASSWORD, TOTP}, target=ACR_MFA, required=ACR_MFA) == Ask((TOTP,))
    assert next_step([UPSTREAM_PWD, OTP], enrolled={PASSWORD, TOTP}, target=ACR_MFA) == \
        Done(ACR_MFA, ("fed", "pwd", "otp", "mfa"))


def test_an_upstream_passkey_mapped_to_mfa_is_not_phishing_resistant():
    swk = steps.upstream_proof(["fed", "swk"], ACR_MFA)
    assert steps.acr_of([swk]) == ACR_MFA
    assert next_step([swk], enrolled=set(), target=ACR_PHISHING_RESISTANT) == Done(ACR_MFA, ("fed", "swk", "mfa"))
    assert steps.acr_of([steps.upstream_proof(["fed", "hwk"], ACR_PHISHING_RESISTANT)]) == ACR_PHISHING_RESISTANT


# Enrolment adds a way in: never on the first factor alone while the person has a second one.

def test_a_required_passkey_is_set_up_only_after_the_app_the_person_has():
    """Password alone, TOTP enrolled, phr required: the app's code first, then the passkey set-up
    (offering the set-up at once would let whoever knows the password add their own passkey)."""
    assert next_step([PWD], enrolled={PASSWORD, TOTP, RECOVERY}, target=ACR_PHISHING_RESISTANT,
                     required=ACR_PHISHING_RESISTANT) == Ask((TOTP, RECOVERY))
    assert next_step([PWD, OTP], enrolled={PASSWORD, TOTP, RECOVERY}, target=ACR_PHISHING_RESISTANT,
                     required=ACR_PHISHING_RESISTANT) == Enrol((WEBAUTHN,))
    recovered = [PWD, steps.recovery_proof()]
    assert next_step(recovered, enrolled={PASSWORD, TOTP}, target=ACR_PHISHING_RESISTANT,
                     required=ACR_PHISHING_RESISTANT) == Enrol((WEBAUTHN,))


def test_a_federated_first_factor_asks_for_the_persons_app_before_any_set_up():
    fed = steps.federated_proof()
    assert next_step([fed], enrolled={PASSWORD, TOTP}, target=ACR_PHISHING_RESISTANT,
                     required=ACR_PHISHING_RESISTANT) == Ask((TOTP,))  # the password adds nothing to it
    assert next_step([fed], enrolled={TOTP}, target=ACR_PHISHING_RESISTANT,
                     required=ACR_PHISHING_RESISTANT) == Ask((TOTP,))


def test_a_security_key_without_user_verification_is_proved_before_an_app_is_set_up():
    """A person whose passkey (without UV) reaches only one factor on its own: with the password
    first, the key is asked (phr), never an app set up in its place."""
    assert next_step([PWD], enrolled={PASSWORD, WEBAUTHN}, target=ACR_MFA, required=ACR_MFA) == Ask((WEBAUTHN,))
    assert next_step([KEY], enrolled={WEBAUTHN, TOTP}, target=ACR_PHISHING_RESISTANT,
                     required=ACR_PHISHING_RESISTANT) == Ask((TOTP,))


def test_enrolment_still_follows_two_factors_that_fall_short_of_the_required_level():
    assert next_step([PWD, OTP], enrolled={PASSWORD, TOTP}, target=ACR_PHISHING_RESISTANT,
                     required=ACR_PHISHING_RESISTANT) == Enrol((WEBAUTHN,))
