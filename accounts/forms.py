from django import forms
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm

from . import lockout
from .keys import NAME_MAX
from .models import User


class RegisterForm(UserCreationForm):
    """Django's sign-up checks (unique username, password rules); `user_register` creates the user."""

    email = forms.EmailField(required=False, help_text="Optional. For account notices only.")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class LoginForm(AuthenticationForm):
    """Django's login form, which says when a login is locked out rather than calling the
    password wrong: during a lockout the backend (accounts.backends) does not look at the
    password, so the right one is refused too, and the trader must know to wait."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "locked": "Too many failed logins: logging in with this username from your address is locked. Try again %(when)s.",
    }

    def clean(self):
        username = self.cleaned_data.get("username")
        self.refuse_if_locked(username)
        try:
            return super().clean()
        except forms.ValidationError:
            self.refuse_if_locked(username)  # this failure may have been the one that locked it
            raise

    def refuse_if_locked(self, username):
        seconds = lockout.locked_for(username, lockout.client_ip(self.request))
        if seconds:
            raise forms.ValidationError(
                self.error_messages["locked"], code="locked", params={"when": lockout.wait_text(seconds)}
            )


class CodeForm(forms.Form):
    """A six-digit code from the authenticator app; spaces are forgiven (apps show "123 456")."""

    code = forms.CharField(
        label="Code from your authenticator app",
        max_length=12,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": r"[0-9 ]*", "autofocus": True}
        ),
    )

    def clean_code(self):
        code = self.cleaned_data["code"].replace(" ", "")
        if not (code.isascii() and code.isdigit() and len(code) == 6):
            raise forms.ValidationError("Enter the 6 digits your app shows.")
        return code


class ApiKeyForm(forms.Form):
    """A new API key as the account page asks for it; accounts.keys checks it all again."""

    name = forms.CharField(max_length=NAME_MAX, help_text="To tell your keys apart, e.g. “market maker bot”.")
    trade = forms.BooleanField(
        required=False,
        label="Allow trading",
        help_text="Place, amend and cancel orders. Without it the key only reads.",
    )
    allowed_ips = forms.CharField(
        required=False,
        label="Allowed addresses",
        help_text="Optional: addresses or CIDR networks, separated by commas or spaces. Empty: any address.",
        widget=forms.TextInput(attrs={"placeholder": "203.0.113.0/24, 198.51.100.7"}),
    )

    def clean_allowed_ips(self):
        return [part for part in self.cleaned_data["allowed_ips"].replace(",", " ").split() if part]
