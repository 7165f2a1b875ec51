from django import forms
from django.contrib.auth.forms import UserCreationForm

from .models import User


class RegisterForm(UserCreationForm):
    """Django's sign-up checks (unique username, password rules); `user_register` creates the user."""

    email = forms.EmailField(required=False, help_text="Optional. For account notices only.")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


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
