"""A real browser (headless Chromium through Selenium) loads the page, searches a user, moves a
slider and sees the top 10 change. Skipped, saying why, only where Chromium or its driver cannot
be installed or started (`.ci/run` installs Debian's `chromium` and `chromium-driver`)."""

import shutil

import pytest

from tests.serve.test_server import changing_edit

TIMEOUT = 30  # seconds to wait for the page


def _binary(*names):
  return next((shutil.which(n) for n in names if shutil.which(n)), None)


@pytest.fixture(scope="module")
def browser():
  try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
  except ImportError as e:
    pytest.skip(f"selenium is not installed ({e}); pip install -e '.[test]'")
  chromium = _binary("chromium", "chromium-browser", "google-chrome")
  driver_path = _binary("chromedriver", "chromium.chromedriver")
  if chromium is None or driver_path is None:
    pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver, "
                f"as .ci/run does as root): browser {chromium}, driver {driver_path}")
  options = webdriver.ChromeOptions()
  options.binary_location = chromium
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--window-size=1400,1000"):
    options.add_argument(flag)
  try:
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
  except WebDriverException as e:
    pytest.skip(f"headless Chromium could not be started: {str(e).splitlines()[0]}")
  driver.set_page_load_timeout(TIMEOUT)
  yield driver
  driver.quit()


def test_search_a_user_move_a_slider_and_see_the_list_change(served, browser):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  from selenium.webdriver.support.ui import WebDriverWait

  explorer, url = served
  # A user and control whose top 10 changes at the slider's maximum (found through the API).
  user, edit, _ = changing_edit(explorer, url, strengths=(f"+{explorer.strength_limit:g}",))
  name = edit.rsplit(":", 1)[0]
  wait = WebDriverWait(browser, TIMEOUT)
  browser.get(url + "/")
  wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")

  def shown_items():
    return [li.get_attribute("data-item") for li in browser.find_elements(By.CSS_SELECTOR, "#after li")]

  box = browser.find_element(By.ID, "user-input")
  box.send_keys(user)
  browser.find_element(By.ID, "user-load").click()
  wait.until(lambda d: len(shown_items()) == 10)
  before = shown_items()
  assert len(browser.find_elements(By.CSS_SELECTOR, "#recent li")) > 0
  slider = browser.find_element(By.CSS_SELECTOR, f'#sliders input[data-name="{name}"]')
  slider.send_keys(Keys.END)  # the keyboard moves a range input to its maximum
  wait.until(lambda d: shown_items() != before and len(shown_items()) == 10)
  assert browser.find_elements(By.CSS_SELECTOR, "#after li.new")
  assert not browser.find_element(By.ID, "error").is_displayed()
  effect = browser.find_element(By.ID, "effect-table").text
  assert f"share {name}" in effect
