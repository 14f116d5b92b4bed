"""The clinician's page: a patient's 30-day readmission risk, why, and scoring a CSV of encounters.

Run with `streamlit run ui/app.py`; READMISSION_API_URL says where the prediction service is. Streamlit runs
this file as a script; it imports `ui.*` and `bento.features` as installed packages (the project is installed
in .venv; the UI image puts /app on PYTHONPATH).
"""

from __future__ import annotations

import streamlit as st

from bento import features
from bento.settings import SettingsError
from ui import batch, form, performance, result
from ui.client import Client, ServiceError
from ui.settings import Settings

ATTEMPTED, PENDING, ANSWER, SERVICE_ERROR = "ui:attempted", "ui:pending", "ui:answer", "ui:service_error"


def main() -> None:
    """Draw the page."""
    st.set_page_config(page_title="Readmission risk", page_icon=":hospital:", layout="wide")
    try:
        settings = Settings.from_env()
    except SettingsError as error:  # a bad variable: say which, draw nothing else
        st.error(f"The app's configuration is wrong: {error}")
        st.stop()
    st.title("30-day readmission risk")
    st.caption(
        "For diabetic inpatients at discharge. Decision support, not diagnosis: the estimate informs "
        "follow-up planning and never replaces clinical judgement."
    )
    one, many, about = st.tabs(["One patient", "Many patients (CSV)", "About the model"])
    with one:
        one_patient(Client(settings))
    with many:
        many_patients(Client(settings), settings.batch_rows)
    with about:
        result.model_card(settings.model_card)
        performance.live_performance(Client(settings))
        st.caption(f"Prediction service: {settings.api_url} (timeout {settings.timeout:g} s).")


def _ask() -> None:
    st.session_state[ATTEMPTED] = True
    st.session_state[PENDING] = True


def one_patient(client: Client) -> None:
    """The encounter form, the request and the answer."""
    state = st.session_state
    form.init_state(state)
    left, right, _ = st.columns([1, 1, 3])
    left.button("Load an example patient", on_click=form.load, args=(state, features.EXAMPLE_PATIENT))
    right.button("Clear the form", on_click=form.reset, args=(state,))
    record, errors = form.check(form.read(state))
    form.render(errors if state.get(ATTEMPTED) else {})
    st.button("Estimate the risk", type="primary", on_click=_ask)
    if state.pop(PENDING, False):
        if errors:
            st.warning(f"{len(errors)} field(s) need attention (marked in red above); nothing was sent.")
        else:
            state[ANSWER], state[SERVICE_ERROR] = None, None
            with st.spinner("Asking the risk service..."):
                try:
                    state[ANSWER] = (record, client.predict(record))
                except ServiceError as error:
                    state[SERVICE_ERROR] = str(error)
    if state.get(SERVICE_ERROR):
        st.error(state[SERVICE_ERROR])
    if state.get(ANSWER):
        sent, answer = state[ANSWER]
        if record != sent:
            st.info("Values have changed since this estimate: press *Estimate the risk* to update it.")
        result.show(answer)


def many_patients(client: Client, chunk: int) -> None:
    """Upload a CSV, see which rows are invalid and why, score the others and download the table."""
    st.markdown(
        "Upload a CSV with the columns of the data set (`race`, `gender`, `age`, ... `diag_1`; `?` is missing). "
        "Rows that fail the checks are listed with the reason; the others are scored."
    )
    upload = st.file_uploader("CSV of encounters", type=["csv"])
    if upload is None:
        return
    try:
        checked = batch.read(upload.getvalue())
    except batch.BatchError as error:
        st.error(str(error))
        return
    if checked.missing_columns:
        st.caption("Columns not in the file are taken as not recorded: " + ", ".join(checked.missing_columns))
    st.write(f"{len(checked.frame)} rows: {len(checked.records)} valid, {len(checked.failures)} with problems.")
    if len(checked.failures):
        st.subheader("Rows not scored")
        st.dataframe(checked.failures, hide_index=True)
    if not checked.records:
        return
    done_key = f"ui:batch:{upload.file_id}"
    if st.button(f"Score {len(checked.records)} rows", type="primary"):
        bar = st.progress(0.0, text="Scoring...")
        try:
            answers = batch.score(client, checked.records, chunk, lambda n, total: bar.progress(n / total))
        except ServiceError as error:
            st.error(str(error))
            return
        finally:
            bar.empty()
        st.session_state[done_key] = batch.results(checked, answers)
    scored = st.session_state.get(done_key)
    if scored is not None:
        st.subheader("Scored rows")
        st.dataframe(scored, hide_index=True)
        st.download_button("Download the scored table (CSV)", scored.to_csv(index=False), "scored.csv", "text/csv")


main()
