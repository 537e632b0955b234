"""Takes `docs/explorer.png`: the explorer on a finished workdir, one user steered, in headless
Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium).

    python docs/explorer_screenshot.py --workdir=runs/ml100k --user=1 --edit="Children's:+8" \
        --edit=Horror:-8
"""

import argparse
import pathlib
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from experiments.configs import ml100k
from seqrec_jax.serve import explorer, server


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="runs/ml100k")
  parser.add_argument("--user", default="1")
  parser.add_argument("--edit", action="append", default=[], help="NAME:STRENGTH (a slider)")
  parser.add_argument("--output", type=pathlib.Path,
                      default=pathlib.Path(__file__).parent / "explorer.png")
  args = parser.parse_args()
  loaded = explorer.Explorer.load(ml100k.get_config(), args.workdir)
  srv, url = server.start_in_thread(loaded)
  options = webdriver.ChromeOptions()
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000",
               "--hide-scrollbars"):
    options.add_argument(flag)
  driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
  wait = WebDriverWait(driver, 60)
  try:
    driver.get(url + "/")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    driver.find_element(By.ID, "user-input").send_keys(args.user)
    driver.find_element(By.ID, "user-load").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#after li")) == 10)
    for text in args.edit:
      name, value = text.rsplit(":", 1)
      slider = driver.find_element(By.CSS_SELECTOR, f'#sliders input[data-name="{name}"]')
      driver.execute_script("arguments[0].value = arguments[1];"
                            "arguments[0].dispatchEvent(new Event('input'));", slider,
                            float(value))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#after li.new"))
    driver.find_element(By.CSS_SELECTOR, "#after li .why").click()
    wait.until(lambda d: d.find_element(By.ID, "explanation").is_displayed())
    time.sleep(0.5)
    driver.save_screenshot(str(args.output))
    print("wrote", args.output)
  finally:
    driver.quit()
    srv.shutdown()


if __name__ == "__main__":
  main()
