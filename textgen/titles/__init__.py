"""Headlines chosen from the article: the title selector behind ``textgen title --method clause``.

At the size of the embedded models, a headline taken from the article beats one written freely: on
the dev splits the best single clause of an article scores char ROUGE-L 57 (CSL abstracts), 46
(iNews) and 52 (CCTV news) against the real title, while the title generator reaches 35 / 17 / 10.
The selector learns to find that clause:

* ``selector``: clauses of the article's head, their vectors (the model's frozen backbone, as the
  summarize extractor makes them) with position features, a DGCNN tagger, and the headline it
  chooses (``TitleSelector``);
* ``training``: labels (the clauses closest to the real title by char ROUGE-L) and training
  (``scripts/train_title_selector.py``).

Both import torch; the task imports them only when it runs.
"""
